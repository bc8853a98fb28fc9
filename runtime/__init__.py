"""gradekit.runtime: grading engine, sandboxed Python graders, model clients, HTTP server and CLI."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Engine": "engine",
    "Graded": "engine",
    "LazyModelClient": "env",
    "OpenAIModelClient": "model_client",
    "SandboxPool": "sandbox",
    "default_env": "env",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy: importing gradekit.runtime must not pull in openai or FastAPI (Lambda cold starts).
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
