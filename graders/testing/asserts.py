"""`assert_reward` and the readable explanation it prints when a grader does not give the expected reward."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from gradekit.graders import Grader, GradingError, Multi, RunResult, load_grader, run
from gradekit.graders.api import GraderLike
from gradekit.graders.executors import Env
from gradekit.graders.models import _ModelGrader, _template_strings, compile_template
from gradekit.graders.samples import SampleInput

_TEMPLATE_FIELDS = ("input", "reference", "expected", "tools")


class GraderAssertionError(AssertionError):
    """A grader gave another reward (or other error flags) than the test expected."""


def _template_fields(grader: Grader) -> list[tuple[str, str]]:
    if isinstance(grader, _ModelGrader):
        return [(f"input[{i}]", t) for i, m in enumerate(grader.input) for t in _template_strings(m.content)]
    return [(f, getattr(grader, f)) for f in _TEMPLATE_FIELDS if isinstance(getattr(grader, f, None), str)]


def rendered_templates(
    grader: GraderLike, model_sample: SampleInput, item: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """What each template of the grader (each sub-grader of a `multi`) renders to for one sample.

    One dict per template: `grader` (the sub-grader's key, "" for a single grader), `field`, `template`, and
    either `value` (the rendered text) or `error` (`{"flag", "message"}`, `value` None).
    """
    g = load_grader(grader)
    nodes: Iterable[tuple[str, Grader]] = g.graders.items() if isinstance(g, Multi) else [("", g)]
    out = []
    for key, node in nodes:
        for field, source in _template_fields(node):
            entry: dict[str, Any] = {"grader": key, "field": field, "template": source, "value": None, "error": None}
            try:
                entry["value"] = compile_template(source).render_one(model_sample, item or {})
            except GradingError as e:
                entry["error"] = {"flag": e.flag, "message": e.message}
            out.append(entry)
    return out


def _rendered(entries: Iterable[dict[str, Any]], indent: str) -> list[str]:
    lines = []
    for e in entries:
        value = repr(e["value"]) if e["error"] is None else f"<{e['error']['flag']}: {e['error']['message']}>"
        lines.append(f"{indent}{e['field']}: {e['template']!r} -> {value}")
    return lines


def explain(
    grader: GraderLike,
    model_sample: SampleInput,
    item: Mapping[str, Any] | None = None,
    result: RunResult | None = None,
) -> str:
    """A readable account of one grading: rendered templates, rewards, sub-rewards and error flags."""
    g = load_grader(grader)
    item = item or {}
    r = result or run(g, model_sample, item)
    lines = [f"grader {g.name!r} ({g.type}): reward {r.reward!r}"]
    templates = rendered_templates(g, model_sample, item)
    nodes: Iterable[tuple[str, Grader]] = g.graders.items() if isinstance(g, Multi) else [("", g)]
    for key, node in nodes:
        indent = "    " if key else "  "
        if key:
            lines.append(f"  {key} ({node.type}): sub-reward {r.sub_rewards.get(key)!r}")
        lines.extend(_rendered((t for t in templates if t["grader"] == key), indent))
    if isinstance(g, Multi):
        lines.append(f"  calculate_output: {g.calculate_output!r}")
    flags = r.errors.flags()
    lines.append(f"  errors: {', '.join(flags) if flags else 'none'}")
    if r.metadata.no_reward is not None:  # the 0.0 above is no grade (docs/no-reward.md)
        missing = ", ".join(f"{k}: {v}" for k, v in r.metadata.no_reward.graders.items())
        lines.append(f"  no reward: {r.metadata.no_reward.reason} ({missing})")
    for name, failure in r.metadata.scores.get("error_details", {}).items():
        lines.append(f"    {name}: {failure['flag']}: {failure['message']}")
    for field in (
        "python_grader_runtime_error_details",
        "python_grader_server_error_type",
        "model_grader_server_error_details",
    ):
        detail = getattr(r.errors, field)
        if detail:
            lines.append(f"  {field}:\n" + "\n".join("    " + ln for ln in detail.splitlines()))
    scores = {k: v for k, v in r.metadata.scores.items() if k != "error_details"}
    if scores:
        lines.append(f"  scores: {json.dumps(scores, default=str)}")
    return "\n".join(lines)


def assert_reward(
    grader: GraderLike,
    model_sample: SampleInput,
    item: Mapping[str, Any] | None = None,
    expected: float | None = None,
    *,
    abs: float = 1e-9,
    errors: Iterable[str] | None = None,
    sub_rewards: Mapping[str, float] | None = None,
    env: Env | None = None,
) -> RunResult:
    """Grade one sample and assert its reward (and, if given, exact error flags and sub-rewards).

    A sample that got no reward (docs/no-reward.md) never matches an expected reward, 0 included.
    """
    g = load_grader(grader)
    r = run(g, model_sample, item, env=env)
    wrong = []
    if expected is not None and r.metadata.no_reward is not None:
        wrong.append(f"expected reward {expected!r}, got no reward ({r.metadata.no_reward.reason})")
    elif expected is not None and not math.isclose(r.reward, expected, rel_tol=0.0, abs_tol=abs):
        wrong.append(f"expected reward {expected!r} (abs={abs}), got {r.reward!r}")
    if errors is not None and sorted(errors) != sorted(r.errors.flags()):
        wrong.append(f"expected error flags {sorted(errors)}, got {sorted(r.errors.flags())}")
    for key, value in (sub_rewards or {}).items():
        got = r.sub_rewards.get(key)
        if got is None or not math.isclose(got, value, rel_tol=0.0, abs_tol=abs):
            wrong.append(f"expected sub-reward {key}={value!r}, got {got!r}")
    if wrong:
        raise GraderAssertionError("; ".join(wrong) + "\n" + explain(g, model_sample, item, r))
    return r
