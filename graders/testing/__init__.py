"""gradekit.testing: unit-test graders with `assert_reward` or `*.grader-tests.yaml` case files, against `FakeLLM`.

`gradekit.testing.fake_llm.FakeLLM` is a scripted OpenAI-compatible judge server for tests of model graders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asserts import GraderAssertionError, assert_reward, explain, rendered_templates

__all__ = ["GraderAssertionError", "assert_reward", "explain", "rendered_templates"]


def __getattr__(name: str) -> Any:
    # Lazy, so that pytest loading the plugin does not import gradekit.graders in every test session.
    if name in __all__:
        from . import asserts

        return getattr(asserts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
