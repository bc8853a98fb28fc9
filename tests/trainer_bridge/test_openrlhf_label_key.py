"""OpenRLHF without `GRADEKIT_LABEL_KEY`: the label fills the one `item` field the grader reads.

OpenRLHF hands the reward function (and the remote reward route) each sample's label, the value of the dataset
column named by `--data.label_key`, without its name. The README's recipe runs a grader that compares with
`{{ item.compliant }}` on a dataset whose label column is `compliant`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gradekit.graders import validate
from gradekit.runtime.server import create_app, running
from gradekit.trainer_bridge.adapters.openrlhf_rewards import ROUTE, default_label_key, register, reward_func

from ..http import post

REVIEW: dict[str, Any] = {
    "type": "multi",
    "name": "security_review",
    "graders": {
        "compliant": {
            "type": "string_check",
            "name": "compliant",
            "input": "{{ sample.output_json.compliant }}",
            "reference": "{{ item.compliant }}",
            "operation": "eq",
        },
        "explained": {
            "type": "string_check",
            "name": "explained",
            "input": "{{ sample.output_json.explanation }}",
            "reference": "",
            "operation": "ne",
        },
    },
    "calculate_output": "0.7 * compliant + 0.3 * explained",
}
PROMPT = "<|im_start|>user\nIs this change compliant?<|im_end|>\n<|im_start|>assistant\n"
ANSWER = '{"compliant": "yes", "explanation": "policy 4.2"}'


@pytest.fixture(autouse=True)
def no_label_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADEKIT_LABEL_KEY", raising=False)


def test_the_label_fills_the_one_item_field_the_grader_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    review = validate(REVIEW)
    assert default_label_key(review) == "compliant"
    monkeypatch.setenv("GRADEKIT_LABEL_KEY", "answer")
    assert default_label_key(review) == "answer"  # the variable, when set, wins


@pytest.mark.parametrize(
    ("reference", "key"),
    [
        ("{{ item['reference answer'] }}", "reference answer"),
        ('{{ item["team"] | lower }}', "team"),
        ("{{ item.team }} / {{ item.team }}", "team"),
        ("{{ item.team }} / {{ item.queue }}", "label"),  # two fields: the label cannot fill both
        ("fixed", "label"),
    ],
)
def test_item_fields_in_any_template_form(reference: str, key: str) -> None:
    grader = {"type": "string_check", "name": "g", "input": "{{ sample.output_text }}", "operation": "eq"}
    assert default_label_key(validate({**grader, "reference": reference})) == key


def test_the_reward_file_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "review.json"
    path.write_text(json.dumps(REVIEW))
    monkeypatch.setenv("GRADEKIT_GRADER", str(path))
    out = reward_func([PROMPT + ANSWER + "<|im_end|>", PROMPT + ANSWER], [PROMPT, PROMPT], ["yes", "no"])
    assert out["rewards"].tolist() == pytest.approx([1.0, 0.3])
    assert out["extra_logs"]["error"].tolist() == [0.0, 0.0]


def test_the_serve_recipe() -> None:
    app = create_app(grader=validate(REVIEW))
    if ROUTE not in {getattr(r, "path", None) for r in app.routes}:  # the entry point may have added it already
        register(app)
    with running(app) as url:
        status, body = post(
            f"{url}{ROUTE}",
            {"query": [PROMPT + ANSWER, PROMPT + ANSWER], "prompts": [PROMPT] * 2, "labels": ["yes", "no"]},
        )
    assert status == 200
    assert body["rewards"] == pytest.approx([1.0, 0.3])
    assert body["extra_logs"]["compliant"] == [1.0, 0.0] and body["extra_logs"]["error"] == [0.0, 0.0]
