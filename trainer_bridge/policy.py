"""The policy being trained: a causal LM and its tokenizer, prompt rendering, sampling and token log-probs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .data import Row
from .tiny import build_tiny_model, build_tokenizer

if TYPE_CHECKING:
    from torch import Tensor
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["TINY_MODEL", "Policy", "Rollout"]

#: The model name that builds a small Qwen2 from a config, with a word-level tokenizer over the job's data.
TINY_MODEL = "tiny-local"
_PLAIN_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


@dataclass
class Rollout:
    """Sampled completions: full token rows (left-padded prompt, then completion), masks and decoded texts."""

    input_ids: Tensor  # [n, prompt_len + completion_len]
    attention_mask: Tensor
    completion_mask: Tensor  # [n, completion_len]: completion tokens up to and including end-of-sequence
    prompt_len: int
    texts: list[str]

    @property
    def tokens(self) -> int:
        """Prompt and completion tokens of every sample (what `trained_tokens` counts)."""
        return int(self.attention_mask.sum())


class Policy:
    """A causal LM with its tokenizer; `load` takes `tiny-local` or a local Hugging Face model directory."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
        from transformers.utils import logging

        logging.disable_progress_bar()  # no bars for writing and loading these small checkpoints
        self.model = model
        self.tokenizer = tokenizer
        self.name = name

    @classmethod
    def load(cls, model: str | os.PathLike[str], *, texts: list[str] | None = None, seed: int = 0) -> Policy:
        """The policy named `model`; `texts` give `tiny-local` its vocabulary."""
        if os.fspath(model) == TINY_MODEL:
            tokenizer = build_tokenizer(texts or [])
            return cls(build_tiny_model(tokenizer, seed=seed), tokenizer, TINY_MODEL)
        path = Path(model)
        if not (path / "config.json").is_file():
            raise ValueError(
                f"model {os.fspath(model)!r} is neither {TINY_MODEL!r} nor a local Hugging Face model directory "
                "(a folder with config.json); gradekit never downloads weights"
            )
        from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

        # AutoTokenizer would pick the model type's own tokenizer class (Qwen2's byte-level BPE) for a folder
        # whose tokenizer is a plain `tokenizers` one, such as tiny-local's word-level tokenizer.
        config = path / "tokenizer_config.json"
        plain = config.is_file() and json.loads(config.read_text()).get("tokenizer_class") in _PLAIN_TOKENIZERS
        loader = PreTrainedTokenizerFast if plain else AutoTokenizer
        tokenizer = loader.from_pretrained(path, local_files_only=True)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype="float32")
        return cls(lm, tokenizer, path.name)

    def save(self, path: Path) -> None:
        """Write the model and tokenizer as a Hugging Face model directory."""
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def prompt_ids(self, row: Row) -> list[int]:
        """The token ids of a row's prompt, ending where the assistant's reply begins."""
        kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False}
        if row.tools:
            kwargs["tools"] = [t.get("function", t) if isinstance(t, dict) else t for t in row.tools]
        text = self.tokenizer.apply_chat_template(row.messages, **kwargs)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def sample(
        self, prompts: list[list[int]], n: int, *, max_new_tokens: int, temperature: float, top_p: float = 1.0
    ) -> Rollout:
        """`n` completions of each prompt (rows of one prompt are contiguous); temperature 0 decodes greedily.

        Sampling draws from the full distribution (no top-k), so training's log-probs are those of the sampler.
        """
        import torch

        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)
        self.model.eval()
        with torch.no_grad():
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": top_p}
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad,
                eos_token_id=eos,
                **(sampling if temperature > 0 else {"do_sample": False}),
            )
        completion = out[:, width:]
        is_eos = completion == eos
        # Tokens after the first end-of-sequence are padding: the mask keeps everything up to and including it.
        completion_mask = ((is_eos.long().cumsum(dim=1) - is_eos.long()) == 0).long()
        texts = [
            self.tokenizer.decode(row[: int(m.sum())], skip_special_tokens=True).strip()
            for row, m in zip(completion, completion_mask, strict=True)
        ]
        return Rollout(out, torch.cat([mask, completion_mask], dim=1), completion_mask, width, texts)

    def token_logprobs(self, rollout: Rollout, *, temperature: float, model: PreTrainedModel | None = None) -> Tensor:
        """Log-probabilities of each completion token under `model` (default: the policy), [n, completion_len]."""
        import torch

        lm = model or self.model
        mask = rollout.attention_mask
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        logits = lm(input_ids=rollout.input_ids, attention_mask=mask, position_ids=positions).logits
        logits = logits[:, rollout.prompt_len - 1 : -1].float() / temperature
        targets = rollout.input_ids[:, rollout.prompt_len :]
        return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
