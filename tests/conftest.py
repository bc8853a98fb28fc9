"""Shared fixtures (paths to the shipped examples), and the rule that a missing import of our own is a failure."""

from __future__ import annotations

import functools
import importlib.metadata
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def examples() -> Path:
    """The examples/ folder."""
    return ROOT / "examples"


# ------------------------------------------------------------------------------------------------ skips
# A skip for a missing import of gradekit's own code, or of a package the dev extra installs, hides a broken
# build (`make test` installs the dev extra): it fails the run. Other skips stay allowed, and are listed.

_IMPORT_SKIP = re.compile(r"could not import '([\w.]+)'|No module named '([\w.]+)'")
#: reason of a skip raised by `pytest.importorskip` -> the modules it could not import (a custom reason hides them)
_IMPORTORSKIP_REASONS: dict[str, tuple[str, ...]] = {}


def _normalize(name: str) -> str:
    """A distribution name as PyPI compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _dev_distributions() -> frozenset[str]:
    """Distributions the dev extra installs: its entries, the gradekit extras it names, gradekit's dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    names, todo, seen = set(), ["dev"], set()
    for spec in project["dependencies"]:
        names.add(_normalize(Requirement(spec).name))
    while todo:
        extra = todo.pop()
        seen.add(extra)
        for spec in extras[extra]:
            req = Requirement(spec)
            if _normalize(req.name) == _normalize(project["name"]):
                todo.extend(e for e in req.extras if e not in seen)
            else:
                names.add(_normalize(req.name))
    return frozenset(names)


def _owned_module(module: str) -> bool:
    """True when `module` is gradekit's or comes from a distribution of the dev extra."""
    top = module.split(".")[0]
    if top == "gradekit":
        return True
    dists = importlib.metadata.packages_distributions().get(top, [])
    return any(_normalize(d) in _dev_distributions() for d in [*dists, top])


def _blocked_import(reason: str) -> str | None:
    """The module whose missing import made a skip with `reason`, when that skip is not allowed."""
    modules = list(_IMPORTORSKIP_REASONS.get(reason, ()))
    modules += [name for pair in _IMPORT_SKIP.findall(reason) for name in pair if name]
    return next((m for m in modules if _owned_module(m)), None)


def _recording_importorskip(real: Callable[..., Any]) -> Callable[..., Any]:
    """`pytest.importorskip` that remembers which modules each of its skips is about."""

    @functools.wraps(real)
    def importorskip(modname: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return real(modname, *args, **kwargs)
        except pytest.skip.Exception as skip:
            missing = getattr(skip.__context__, "name", None)
            _IMPORTORSKIP_REASONS[str(skip.msg)] = (modname, *([missing] if isinstance(missing, str) else []))
            raise

    importorskip.__gradekit_recording__ = True  # type: ignore[attr-defined]
    return importorskip


if not getattr(pytest.importorskip, "__gradekit_recording__", False):
    pytest.importorskip = _recording_importorskip(pytest.importorskip)


def _skip_reason(longrepr: Any) -> str:
    """The reason of a skip report."""
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _fail_blocked(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn a skip for a missing gradekit or dev-extra import into a failure."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report.longrepr)
    module = _blocked_import(reason)
    if module is not None:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped for a missing import of {module!r}, which is gradekit's own or in the dev extra: "
            f"a broken build, not an optional feature ({reason})"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Fail a test skipped for a missing import of gradekit or of a dev dependency."""
    report = yield
    _fail_blocked(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Fail a module skipped at import for a missing import of gradekit or of a dev dependency."""
    report = yield
    _fail_blocked(report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List the skips that were allowed, with their reasons."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if not hasattr(r, "wasxfail")]
    if skipped:
        terminalreporter.section("allowed skips (not a missing gradekit or dev-extra import)")
        for report in skipped:
            terminalreporter.line(f"{report.nodeid}: {_skip_reason(report.longrepr)}")
