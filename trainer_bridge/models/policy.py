"""The policy being trained: a causal LM and its tokenizer, prompt rendering, sampling and token log-probs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..loop.completions import as_system, offer_tools
from ..loop.data import Row
from .catalogue import LORA_BASE, TINY_MODEL, display_name, load_model, lora_base, quiet_peft

if TYPE_CHECKING:
    from torch import Tensor
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .structured import StructuredOutput

__all__ = ["TINY_MODEL", "Policy", "Rollout"]


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
    """A causal LM with its tokenizer; `load` takes any name of the model catalogue (`catalogue.load_model`)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        base: dict[str, Any] | None = None,
    ) -> None:
        from transformers.utils import logging

        logging.disable_progress_bar()  # no bars for writing and loading these small checkpoints
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.base = base or {"model": name, "seed": 0}  # what a LoRA adapter of this policy applies to

    @classmethod
    def load(cls, model: str | os.PathLike[str], *, texts: list[str] | None = None, seed: int = 0) -> Policy:
        """The policy named `model` (a name of the model catalogue); `texts` give `tiny-local` its vocabulary."""
        lm, tokenizer = load_model(model, texts=texts, seed=seed)
        adapter = Path(model) / LORA_BASE
        base = json.loads(adapter.read_text(encoding="utf-8")) if adapter.is_file() else lora_base(model, seed)
        return cls(lm, tokenizer, display_name(model), base)

    @property
    def is_lora(self) -> bool:
        """Whether the model is trained through LoRA adapters (a peft model)."""
        return hasattr(self.model, "peft_config")

    def add_lora(self, rank: int, alpha: float) -> None:
        """Freeze the model and train low-rank adapters of every linear layer instead (peft's LoRA)."""
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear", task_type="CAUSAL_LM")
        with quiet_peft():
            self.model = get_peft_model(self.model, config)

    def merge(self) -> None:
        """Fold the LoRA adapters into the weights: a plain model again, saved as a full model folder."""
        if self.is_lora:
            self.model = self.model.merge_and_unload()

    @property
    def n_parameters(self) -> int:
        """The number of weights of the model."""
        return sum(p.numel() for p in self.model.parameters())

    def save(self, path: Path) -> None:
        """Write the model and tokenizer as a Hugging Face model directory (with LoRA: the adapter and its base)."""
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        if self.is_lora:
            (Path(path) / LORA_BASE).write_text(json.dumps(self.base), encoding="utf-8")

    def prompt_ids(self, row: Row) -> list[int]:
        """The token ids of a row's prompt, ending where the assistant's reply begins; its tools are offered through
        the chat template, or in the system message when the template ignores them or there is none (`offer_tools`);
        developer messages are system ones for a template without that role (`as_system`)."""
        functions = [t.get("function", t) if isinstance(t, dict) else t for t in row.tools or []]
        template = self.tokenizer.chat_template
        special = self.tokenizer.get_added_vocab()  # a role token such as tiny-local's <|developer|> names the role
        messages, tools = offer_tools(as_system(row.messages, template, special), functions, template)
        if not template:  # a model folder without one: "role: text" lines
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        else:
            kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False}
            if tools:
                kwargs["tools"] = tools
            text = self.tokenizer.apply_chat_template(messages, **kwargs)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def sample(
        self,
        prompts: list[list[int]],
        n: int,
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        streamer: Any = None,
        structured: StructuredOutput | None = None,
    ) -> Rollout:
        """`n` completions of each prompt (rows of one prompt are contiguous); temperature 0 decodes greedily.

        Sampling draws from the full distribution (no top-k), so training's log-probs are those of the sampler.
        `streamer` (a transformers streamer, one prompt and n=1) receives the tokens as they are generated.
        `structured` (a compiled `response_format`) masks the logits so every reply follows its JSON schema.
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
                streamer=streamer,
                logits_processor=[structured.processor(len(ids), width, max_new_tokens)] if structured else None,
                **(sampling if temperature > 0 else {"do_sample": False}),
            )
        completion = out[:, width:]
        is_eos = completion == eos
        # Tokens after the first end-of-sequence are padding: the mask keeps everything up to and including it.
        completion_mask = ((is_eos.long().cumsum(dim=1) - is_eos.long()) == 0).long()
        decode = structured.decode if structured else self._decode
        texts = [decode(row[: int(m.sum())].tolist()) for row, m in zip(completion, completion_mask, strict=True)]
        return Rollout(out, torch.cat([mask, completion_mask], dim=1), completion_mask, width, texts)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

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
