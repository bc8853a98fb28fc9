"""gradekit.trainer_bridge: graders as rewards in TRL, verl and OpenRLHF, and gradekit's own RFT training loop.

Its parts: `adapters/` (rewards for TRL, verl and OpenRLHF), `loop/` (the integrated GRPO loop: job, steps,
metrics, events, checkpoints), `models/` (the model catalogue, loaders, the tiny model) and `service/` (the local
fine-tuning API). Names are imported on first use, so `import gradekit.trainer_bridge` stays cheap (torch loads
only to train).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "to_trl": "adapters.trl_rewards",
    "to_verl": "adapters.verl_rewards",
    "to_verl_batch": "adapters.verl_rewards",
    "to_openrlhf": "adapters.openrlhf_rewards",
    "RFTJob": "loop.job",
    "Hyperparameters": "loop.hyperparameters",
    "build_tokenizer": "models.tiny",
    "build_tiny_model": "models.tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
