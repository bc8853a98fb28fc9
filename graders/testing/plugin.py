"""pytest plugin: every `*.grader-tests.yaml` / `*.grader-tests.jsonl` file becomes a set of grader tests.

A case file names its grader with a top-level `grader:` (a path relative to the file, a `module:function`,
or an inline grader); without one, the grader is the `X.json`, `X.yaml` or `X.yml` beside `X.grader-tests.*`.
Each case has `sample` (the model output), optional `item`, and what to expect: `reward` (with optional
`abs`), `errors` (the exact list of error flags) and `sub_rewards`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SUFFIXES = (".grader-tests.yaml", ".grader-tests.yml", ".grader-tests.jsonl")
_CASE_KEYS = {"name", "sample", "item", "reward", "abs", "errors", "sub_rewards"}


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect grader case files."""
    if file_path.name.endswith(SUFFIXES):
        return GraderCaseFile.from_parent(parent, path=file_path)
    return None


def _stem(path: Path) -> str:
    return next(path.name[: -len(s)] for s in SUFFIXES if path.name.endswith(s))


class GraderCaseFile(pytest.File):
    """A file of grader test cases."""

    def _load(self) -> tuple[Any, list[dict[str, Any]]]:
        text = self.path.read_text(encoding="utf-8")
        grader: Any = None
        if self.path.suffix == ".jsonl":
            cases = []
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    case = json.loads(line)
                except ValueError as e:
                    raise self.CollectError(f"{self.path}:{lineno}: not JSON: {e}") from None
                if not isinstance(case, dict):
                    raise self.CollectError(f"{self.path}:{lineno}: a case must be a JSON object")
                case.setdefault("name", f"line {lineno}")
                cases.append(case)
        else:
            import yaml

            doc = yaml.safe_load(text) or {}
            if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
                raise self.CollectError(f"{self.path}: expected a mapping with a `cases:` list")
            grader, cases = doc.get("grader"), doc["cases"]
        return grader, cases

    def _grader(self, declared: Any) -> Any:
        if isinstance(declared, str) and not declared.lstrip().startswith("{"):
            candidate = self.path.parent / declared
            return str(candidate) if candidate.exists() else declared
        if declared is not None:
            return declared
        for ext in (".json", ".yaml", ".yml"):
            candidate = self.path.parent / (_stem(self.path) + ext)
            if candidate.exists():
                return str(candidate)
        raise self.CollectError(f"{self.path}: no `grader:` given and no {_stem(self.path)}.json/.yaml beside it")

    def collect(self) -> Iterator[pytest.Item]:
        """One test item per case."""
        declared, cases = self._load()
        grader = self._grader(declared)
        for n, case in enumerate(cases, 1):
            if not isinstance(case, dict) or "sample" not in case:
                raise self.CollectError(f"{self.path}: case {n} must be a mapping with a `sample`")
            unknown = set(case) - _CASE_KEYS
            if unknown:
                raise self.CollectError(f"{self.path}: case {n} has unknown keys {sorted(unknown)}")
            yield GraderCase.from_parent(self, name=str(case.get("name", f"case {n}")), grader=grader, case=case)


class GraderCase(pytest.Item):
    """One grader test case."""

    def __init__(self, *, grader: Any, case: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grader = grader
        self.case = case

    def runtest(self) -> None:
        """Grade the case's sample and check what it expects."""
        from .asserts import assert_reward

        c = self.case
        assert_reward(
            self.grader,
            c["sample"],
            c.get("item"),
            c.get("reward"),
            abs=float(c.get("abs", 1e-9)),
            errors=c.get("errors"),
            sub_rewards=c.get("sub_rewards"),
        )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """Show the grader's explanation, not a Python traceback."""
        from .asserts import GraderAssertionError

        if isinstance(excinfo.value, GraderAssertionError):
            return f"{self.path.name}::{self.name}\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where the case lives."""
        return self.path, 0, f"grader case: {self.name}"
