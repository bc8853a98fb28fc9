"""gradekit's local fine-tuning service: OpenAI's (and Bedrock's OpenAI-compatible) files, RFT jobs and inference.

`gradekit serve` serves it, on the config file named by `$GRADEKIT_FINETUNE_CONFIG` (see `ServiceConfig`) or on
the default config (data in `./gradekit-data`); the routes come from `routes.register`, a `gradekit.routes`
entry point. Jobs train in a worker process
(`python -m gradekit.trainer_bridge.service.worker`, started by the server) with `RFTJob`.
"""

from __future__ import annotations

from .config import CONFIG_ENV, ConfigError, ServiceConfig

__all__ = ["CONFIG_ENV", "ConfigError", "ServiceConfig"]
