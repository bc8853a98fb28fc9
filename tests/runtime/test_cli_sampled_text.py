"""`gradekit grade --sample-from` keeps the answer it sampled in each results line, next to the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gradekit.runtime import cli
from gradekit.testing.fake_llm import FakeLLM, Status, Text

GRADER = {
    "type": "string_check",
    "name": "capital",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.capital }}",
    "operation": "eq",
}
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Peru": "Lima", "Chad": "N'Djamena"}


def test_results_keep_the_sampled_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(GRADER))
    data = tmp_path / "data.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"The capital of {country}?"}], "capital": capital}
        for country, capital in CAPITALS.items()
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = {"France": "Paris", "Japan": "Kyoto", "Peru": "Lima\n(the City of Kings)"}

    def script(body: dict[str, Any], n: int) -> Any:
        country = body["messages"][-1]["content"].removeprefix("The capital of ").removesuffix("?")
        return Text(answers[country]) if country in answers else Status(400, "no answer for Chad")

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    out = tmp_path / "results.jsonl"
    argv = ["grade", "--grader", str(grader), "--data", str(data), "--out", str(out), "-q", "--max-error-rate", "1"]
    with FakeLLM(script=script) as llm:
        assert cli.main([*argv, "--sample-from", llm.base_url, "--model", "m"]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["row"] for r in got] == [0, 1, 2, 3]
    assert [r.get("sample") for r in got] == ["Paris", "Kyoto", "Lima\n(the City of Kings)", None]
    assert [r["reward"] for r in got] == [1.0, 0.0, 0.0, 0.0]
    assert got[3]["metadata"]["errors"]["sample_parse_error"] is True  # a failed request keeps no answer
    assert all("sample_tool_calls" not in r for r in got)

    # --resume reads lines that carry the answer, and grades only the rest
    out.write_text("".join(line + "\n" for line in out.read_text().splitlines()[:2]))
    with FakeLLM(script=script) as llm:
        assert cli.main([*argv, "--sample-from", llm.base_url, "--model", "m", "--resume"]) == 0
        assert llm.count == 2
    assert [json.loads(line).get("sample") for line in out.read_text().splitlines()] == [
        "Paris",
        "Kyoto",
        "Lima\n(the City of Kings)",
        None,
    ]


def test_results_from_a_samples_file_keep_no_copy(tmp_path: Path) -> None:
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(GRADER))
    data, samples, out = tmp_path / "data.jsonl", tmp_path / "samples.jsonl", tmp_path / "out.jsonl"
    data.write_text('{"capital": "Paris"}\n')
    samples.write_text('"Paris"\n')
    argv = ["grade", "--grader", str(grader), "--data", str(data), "--samples", str(samples), "--out", str(out), "-q"]
    assert cli.main(argv) == 0
    [line] = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["reward"] == 1.0 and "sample" not in line  # the samples file already holds it
