"""Constrained decoding without a model: a byte-level BPE tokenizer trained on given texts, and random logits
sampled through a constraint's logits mask, as `Policy.sample` applies it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def byte_level_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer (as pretrained models have) trained on `texts`, with `<eos>` as its end token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"], initial_alphabet=alphabet)
    bpe.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<eos>")


def random_replies(tokenizer: Any, constraint: Any, *, rows: int, budget: int, seed: int) -> list[str]:
    """`rows` replies of scaled random logits through `constraint`'s mask, each ended within `budget` tokens."""
    eos = tokenizer.eos_token_id
    mask = constraint.processor(rows, prompt_len=1, max_new_tokens=budget)
    generator = torch.Generator().manual_seed(seed)
    ids, done = torch.full((rows, 1), eos), torch.zeros((rows, 1), dtype=torch.bool)
    for _ in range(budget):
        scores = mask(ids, torch.randn((rows, len(tokenizer)), generator=generator) * 3)
        chosen = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator).masked_fill(done, eos)
        ids, done = torch.cat([ids, chosen], dim=1), done | (chosen == eos)
    assert done.all(), "a reply ran out of its tokens"
    return [constraint.decode(row[1:].tolist()) for row in ids]
