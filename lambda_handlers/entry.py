"""Zero-code Lambda entry point: `handler` grades with the grader named by `GRADEKIT_GRADER`.

`GRADEKIT_GRADER` is a bundled JSON/YAML file (relative to `LAMBDA_TASK_ROOT`) or `module:function`.
Set the function's handler to `gradekit.lambda_handlers.entry.handler`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .handler import LambdaHandler, bedrock_reward_handler


def _grader_source() -> str:
    spec = os.environ.get("GRADEKIT_GRADER")
    if not spec:
        raise RuntimeError("set GRADEKIT_GRADER to a bundled grader file (e.g. grader.json) or `module:function`")
    root = Path(os.environ.get("LAMBDA_TASK_ROOT", "."))
    return str(root / spec) if (root / spec).is_file() else spec


_handler: LambdaHandler | None = None


def handler(event: Any, context: Any) -> Any:
    """The Lambda handler (answers in the form the event came in: see `events.wrap_response`)."""
    global _handler
    if _handler is None:
        _handler = bedrock_reward_handler(_grader_source())
    return _handler(event, context)
