"""Function graders imported by reference (`tests.sample_graders:...`) in the tests."""

from __future__ import annotations

from typing import Any

from gradekit.graders import grader


@grader
def exact_answer(sample: dict[str, Any], item: dict[str, Any]) -> float:
    """1.0 when the output equals the item's answer."""
    return 1.0 if sample["output_text"] == item.get("answer") else 0.0


def plain_length_reward(sample, item):
    """Shorter is better."""
    return 1.0 / (1 + len(sample["output_text"]))
