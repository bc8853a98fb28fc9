"""The tasks SmolLM2 learns (examples/smollm2_learn.py): data, graders and the best constant answer's reward."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradekit.graders import run_batch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

import smollm2_learn  # noqa: E402


@pytest.mark.parametrize("folder", ["sentiment", "city_extraction", "category_pick"])
def test_the_generator_writes_the_shipped_files(folder: str, tmp_path: Path) -> None:
    copy = tmp_path / folder
    shutil.copytree(EXAMPLES / folder, copy)
    subprocess.run([sys.executable, str(copy / "make_data.py")], check=True)
    for name in ("train.jsonl", "valid.jsonl"):
        assert (copy / name).read_bytes() == (EXAMPLES / folder / name).read_bytes()


def test_the_ticket_routing_generator_writes_both_forms(tmp_path: Path) -> None:
    copy = tmp_path / "ticket_routing"
    shutil.copytree(EXAMPLES / "ticket_routing", copy)
    subprocess.run([sys.executable, str(copy / "make_data.py")], check=True)
    for name in ("train.jsonl", "valid.jsonl", "train_fewshot.jsonl", "valid_fewshot.jsonl"):
        assert (copy / name).read_bytes() == (EXAMPLES / "ticket_routing" / name).read_bytes()


@pytest.mark.parametrize("split", ["train", "valid"])
def test_the_fewshot_rows_are_the_plain_rows_with_worked_examples_no_ticket_of_either(split: str) -> None:
    plain, fewshot = _rows("ticket_routing", f"{split}.jsonl"), _rows("ticket_routing", f"{split}_fewshot.jsonl")
    assert len(plain) == len(fewshot) == {"train": 160, "valid": 32}[split]
    tickets = {str(m["content"]) for r in plain for m in r["messages"] if m["role"] == "user"}  # type: ignore[attr-defined]
    for a, b in zip(plain, fewshot, strict=True):
        shown = b["messages"][1:-1]  # type: ignore[index]
        assert {**b, "messages": [b["messages"][0], b["messages"][-1]]} == a  # type: ignore[index]
        assert [m["role"] for m in shown] == ["user", "assistant"] * 4
        assert [m["content"] for m in shown[1::2]] == ["billing", "account", "shipping", "technical"]
        assert not {m["content"] for m in shown[::2]} & tickets


def _rows(folder: str, name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (EXAMPLES / folder / name).read_text().splitlines()]


def test_validation_cities_never_appear_in_training() -> None:
    train = {r["city"] for r in _rows("city_extraction", "train.jsonl")}
    valid = [r["city"] for r in _rows("city_extraction", "valid.jsonl")]
    assert (len(train), len(valid), len(set(valid))) == (20, 32, 16)
    assert not train & set(valid)


def test_validation_reviews_use_opinions_training_never_uses() -> None:
    def opinions(name: str) -> set[str]:
        return {str(r["messages"][1]["content"]).split(" ", 2)[-1] for r in _rows("sentiment", name)}  # type: ignore[index]

    labels = [r["label"] for r in _rows("sentiment", "valid.jsonl")]
    assert (labels.count("positive"), labels.count("negative")) == (16, 16)
    assert not opinions("train.jsonl") & opinions("valid.jsonl")


def test_validation_asks_about_words_training_never_asks_about() -> None:
    train = {r["answer"] for r in _rows("category_pick", "train.jsonl")}
    valid = _rows("category_pick", "valid.jsonl")
    assert (len(train), len(valid), len({r["answer"] for r in valid})) == (30, 30, 10)
    assert not train & {r["answer"] for r in valid}
    assert all(r["answer"] in r["options"] and len(r["options"]) == 3 for r in valid)  # type: ignore[operator]


def _grade(folder: str, samples: list[str], item: dict[str, str]) -> list[float]:
    grader = json.loads((EXAMPLES / folder / "grader.json").read_text())
    return [round(r, 3) for r in run_batch(grader, samples, [item] * len(samples)).rewards]


def test_sentiment_grader_gives_format_and_answer_credit() -> None:
    samples = ["positive", "Positive.", "negative", "The review is positive.", "positive or negative"]
    assert _grade("sentiment", samples, {"label": "positive"}) == [1.0, 1.0, 0.2, 0.0, 0.0]


def test_city_grader_gives_partial_credit_for_naming_the_city_and_more_for_a_short_answer() -> None:
    samples = ["Seoul", "seoul.", "City: Seoul", "The sentence mentions Seoul.", "Busan", ""]
    assert _grade("city_extraction", samples, {"city": "Seoul"}) == [1.0, 1.0, 0.6, 0.3, 0.0, 0.0]


def test_category_grader_gives_format_credit_for_any_listed_word() -> None:
    item = {"answer": "mango", "options": ["chair", "mango", "cloud"]}
    samples = ["mango", "Mango.", "chair", "banana", "The answer is mango"]
    assert _grade("category_pick", samples, item) == [1.0, 1.0, 0.2, 0.0, 0.0]


@pytest.mark.parametrize(
    ("task", "answer", "reward"),
    [
        ("sentiment", "positive", 0.6),
        ("city", "Amsterdam, Barcelona, Budapest, Denver, Glasgow, Helsinki, Istanbul, Lima, Manila, Melbourne, "
         "Montreal, Mumbai, Nairobi, Seoul, Stockholm, Zurich", 0.3),
        ("category", "truck", 0.1),
        ("routing", "technical", 0.25),
    ],
)  # fmt: skip
def test_best_constant_answer(task: str, answer: str, reward: float) -> None:
    best, score = smollm2_learn.best_constant(smollm2_learn.TASKS[task])
    assert (best, round(score, 3)) == (answer, reward)


def test_routing_reads_the_fewshot_files_as_shipped() -> None:
    task = smollm2_learn.TASKS["routing"]
    lines = smollm2_learn.task_rows(task, task.files[0], task.train_rows)
    assert lines == (EXAMPLES / "ticket_routing" / "train_fewshot.jsonl").read_text().splitlines()[:96]
    assert (task.grader, task.warm_start) == ("grader.json", None)  # the exact-team grader, no warm start


def test_an_unknown_task_is_one_usage_line() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "smollm2_learn.py"), "poetry"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr == "usage: smollm2_learn.py {sentiment,city,category,routing}\n"
