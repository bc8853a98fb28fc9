"""gradekit.trainer_bridge: graders as rewards in TRL, verl and OpenRLHF, and gradekit's own RFT training loop.

Names are imported on first use, so `import gradekit.trainer_bridge` stays cheap (torch loads only to train).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "to_trl": "trl_rewards",
    "to_verl": "verl_rewards",
    "to_verl_batch": "verl_rewards",
    "to_openrlhf": "openrlhf_rewards",
    "RFTJob": "job",
    "Hyperparameters": "hyperparameters",
    "build_tokenizer": "tiny",
    "build_tiny_model": "tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
