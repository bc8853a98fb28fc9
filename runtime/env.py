"""The runtime's default environment: Python graders in the sandbox pool, judges through OpenAI-compatible APIs.

Registered as the `gradekit.env` entry point, so `gradekit.graders.run` and everything built on it use it
when no `Env` is passed. Everything starts lazily: no worker process, connection or `openai` import
(a quarter of a second) happens until a grader needs one, which keeps Lambda cold starts small.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gradekit.graders import Env, ModelClient, ModelGrade

from .endpoint_client import EndpointClient
from .sandbox import SandboxPool

if TYPE_CHECKING:
    from gradekit.graders import LabelModel, ScoreModel


class LazyModelClient:
    """Builds an `OpenAIModelClient` (configured by environment) on first use."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._client: ModelClient | None = None
        self._lock = threading.Lock()

    def _get(self) -> ModelClient:
        with self._lock:
            if self._client is None:
                from .model_client import OpenAIModelClient

                self._client = OpenAIModelClient(**self._options)
            return self._client

    async def grade(
        self, grader: ScoreModel | LabelModel, messages: Sequence[list[dict[str, Any]]]
    ) -> list[ModelGrade]:
        """Grade with the real client, creating it first if needed."""
        return await self._get().grade(grader, messages)


def default_env() -> Env:
    """Sandboxed `python` graders, an OpenAI-compatible judge client, an HTTP client for `endpoint` graders."""
    return Env(python=SandboxPool(), model=LazyModelClient(), endpoint=EndpointClient())
