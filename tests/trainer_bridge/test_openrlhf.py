"""OpenRLHF adapters against its documented contract: `reward_func(queries, prompts, labels)` and the HTTP RM protocol.

OpenRLHF itself does not install on a CPU machine (flash-attn, deepspeed), so these tests call the function the
way its `SingleTurnAgentExecutor` does (lists of length 1, through `asyncio.to_thread`) and POST the JSON its
`_fetch_rewards_via_http` sends.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from gradekit.graders import validate
from gradekit.runtime import cli
from gradekit.runtime.server import create_app, running
from gradekit.trainer_bridge.adapters.openrlhf_rewards import ROUTE, register, response_text, reward_func, to_openrlhf

from ..http import post

GRADER: dict[str, Any] = {
    "type": "multi",
    "name": "arith",
    "graders": {
        "correct": {
            "type": "string_check",
            "name": "correct",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.label }}",
            "operation": "eq",
        },
        "unit": {
            "type": "string_check",
            "name": "unit",
            "input": "{{ item.unit }}",
            "reference": "apples",
            "operation": "eq",
        },
    },
    "calculate_output": "2 * correct - 0.5 + unit",
}

PROMPT = "<|im_start|>user\nwhat is 3 plus 4?<|im_end|>\n<|im_start|>assistant\n"
UNIT_LABEL = json.dumps({"label": "7", "unit": "apples"})
ANSWER_LABEL = json.dumps({"answer": "7", "unit": "apples"})


def query(response: str) -> str:
    """What OpenRLHF passes: prompt + response decoded with special tokens."""
    return f"{PROMPT}{response}<|im_end|><|endoftext|>"


def test_called_as_openrlhf_calls_it() -> None:
    fn = to_openrlhf(GRADER)
    out = fn([query("7")], [PROMPT], [UNIT_LABEL])
    assert set(out) == {"rewards", "scores", "extra_logs"}
    assert out["rewards"].dtype == torch.float32 and out["rewards"].tolist() == [2.5]
    assert out["scores"].tolist() == [1.0]  # clamped to [0, 1]
    assert set(out["extra_logs"]) == {"correct", "unit", "error", "no_reward"}
    assert {k: v.tolist() for k, v in out["extra_logs"].items()} == {
        "correct": [1.0],
        "unit": [1.0],
        "error": [0.0],
        "no_reward": [0.0],
    }
    assert all(v.dtype == torch.float32 for v in out["extra_logs"].values())


def test_batch_labels_prompts_and_errors() -> None:
    fn = to_openrlhf(GRADER)
    queries = [query("7"), query("8"), "no prompt here: 7", query("7")]
    labels = [UNIT_LABEL, UNIT_LABEL, json.dumps({"label": "no prompt here: 7", "unit": "pears"}), "7"]
    out = fn(queries, [PROMPT] * 4, labels)
    # row 2: the query does not start with its prompt, so the whole query is the response;
    # row 3: a plain label has no `unit`: invalid_variable_error, reward 0.
    assert out["rewards"].tolist() == [2.5, 0.5, 1.5, 0.0]
    assert out["scores"].tolist() == [1.0, 0.5, 1.0, 0.0]
    assert out["extra_logs"]["correct"].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert out["extra_logs"]["unit"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert out["extra_logs"]["error"].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_negative_rewards_score_zero_and_label_key() -> None:
    grader = json.loads(json.dumps(GRADER).replace("item.label", "item.answer"))
    fn = to_openrlhf(grader, label_key="answer")
    out = fn([query("8")], [PROMPT], [json.dumps({"unit": "pears"})])
    assert out["rewards"].tolist() == [-0.5]
    assert out["scores"].tolist() == [0.0]


def test_json_label_keys_update_the_item() -> None:
    check = {"type": "string_check", "name": "s", "input": "{{ item.label }}", "reference": "x", "operation": "eq"}
    fn = to_openrlhf(check)
    assert fn(["q"], ["q"], ["x"])["rewards"].tolist() == [1.0]
    assert fn(["q"], ["q"], [json.dumps({"label": "x"})])["rewards"].tolist() == [1.0]  # the JSON's key wins
    assert fn(["q"], ["q"], ["{not json"])["rewards"].tolist() == [0.0]  # kept as the raw label


def test_response_text() -> None:
    assert response_text(query(" 7 "), PROMPT) == "7"
    assert response_text("7</s><pad><pad>", None) == "7"
    assert response_text("abc 7", "xyz") == "abc 7"
    assert response_text("7<|im_end|>", "7", strip=()) == "<|im_end|>"


def test_missing_prompts_and_labels() -> None:
    check = {"type": "string_check", "name": "s", "input": "{{ sample.output_text }}", "reference": "7"}
    fn = to_openrlhf({**check, "operation": "eq"})
    assert fn(["7<|endoftext|>"], None, None)["rewards"].tolist() == [1.0]


def test_module_reward_func_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grader = tmp_path / "g.json"
    grader.write_text(json.dumps(json.loads(json.dumps(GRADER).replace("item.label", "item.answer"))), encoding="utf-8")
    monkeypatch.setenv("GRADEKIT_GRADER", str(grader))
    monkeypatch.setenv("GRADEKIT_LABEL_KEY", "answer")
    # A user's reward file is one line; OpenRLHF imports it by path and calls it in a thread, one sample at a time.
    user_file = tmp_path / "reward.py"
    user_file.write_text(
        "from gradekit.trainer_bridge.adapters.openrlhf_rewards import reward_func\n", encoding="utf-8"
    )
    spec = importlib.util.spec_from_file_location("reward_func", user_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    async def rollout() -> list[dict[str, Any]]:
        return await asyncio.gather(
            asyncio.to_thread(module.reward_func, [query("7")], [PROMPT], [ANSWER_LABEL]),
            asyncio.to_thread(module.reward_func, [query("9")], [PROMPT], [ANSWER_LABEL]),
        )

    first, second = asyncio.run(rollout())
    assert first["rewards"].tolist() == [2.5]
    assert second["rewards"].tolist() == [0.5]


def test_module_reward_func_without_grader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADEKIT_GRADER", raising=False)
    with pytest.raises(ValueError, match="GRADEKIT_GRADER"):
        reward_func(["q"], ["q"], ["l"])


def test_adapters_import_without_torch() -> None:
    code = (
        "import sys\n"
        "import gradekit.trainer_bridge.adapters.openrlhf_rewards, gradekit.trainer_bridge.adapters.verl_rewards\n"
        "import gradekit.trainer_bridge.adapters.trl_rewards\n"
        "assert not {'torch', 'trl', 'verl', 'transformers'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


# --- the HTTP route -------------------------------------------------------------------------------------------


def app_with_route(**kwargs: Any) -> Any:
    app = create_app(**kwargs)
    if ROUTE not in {getattr(r, "path", None) for r in app.routes}:  # the entry point may have added it already
        register(app)
    return app


def test_http_route_answers_openrlhf_json() -> None:
    with running(app_with_route(grader=validate(GRADER))) as url:
        status, body = post(f"{url}{ROUTE}", {"query": [query("7")], "prompts": [PROMPT], "labels": [UNIT_LABEL]})
        assert status == 200
        assert body == {
            "rewards": [2.5],
            "scores": [1.0],
            "extra_logs": {"correct": [1.0], "unit": [1.0], "error": [0.0], "no_reward": [0.0]},
        }
        batch = {"query": [query("8"), query("7")], "prompts": [PROMPT, PROMPT], "labels": [UNIT_LABEL, "7"]}
        status, body = post(f"{url}{ROUTE}", batch)
        assert status == 200
        assert body["rewards"] == [0.5, 0.0]
        assert body["extra_logs"]["error"] == [0.0, 1.0]
        # With several servers OpenRLHF sends some of them an empty shard.
        status, body = post(f"{url}{ROUTE}", {"query": [], "prompts": [], "labels": []})
        assert (status, body) == (
            200,
            {"rewards": [], "scores": [], "extra_logs": {"correct": [], "unit": [], "error": [], "no_reward": []}},
        )
        # Only `query` is required (OpenRLHF's own reward model server reads nothing else).
        status, body = post(f"{url}{ROUTE}", {"query": ["7"]})
        assert status == 200 and body["extra_logs"]["error"] == [1.0]  # no label, so no unit: invalid_variable_error
        status, body = post(f"{url}{ROUTE}", {"query": ["a", "b"], "labels": ["x"]})
        assert status == 400 and body["error"]["param"] == "labels"
        status, body = post(f"{url}{ROUTE}", {"prompts": ["a"]})
        assert status == 400 and body["error"]["param"] == "query"


def test_http_route_without_grader_is_a_400() -> None:
    with running(app_with_route()) as url:
        status, body = post(f"{url}{ROUTE}", {"query": ["7"], "prompts": [""], "labels": ["7"]})
    assert status == 400
    assert body["error"]["code"] == "grader_not_configured"
    assert body["error"]["type"] == "invalid_request_error"
    assert "gradekit serve --grader" in body["error"]["message"]


def test_route_loads_through_the_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    from gradekit.runtime import server

    # The line pyproject.toml declares under [project.entry-points."gradekit.routes"].
    ep = EntryPoint(
        name="openrlhf", value="gradekit.trainer_bridge.adapters.openrlhf_rewards:register", group=server.ROUTES_GROUP
    )
    monkeypatch.setattr(server, "entry_points", lambda group: [ep] if group == server.ROUTES_GROUP else [])
    with running(create_app(grader=validate(GRADER))) as url:
        status, body = post(f"{url}{ROUTE}", {"query": [query("7")], "prompts": [PROMPT], "labels": [UNIT_LABEL]})
    assert (status, body["rewards"]) == (200, [2.5])


# --- gradekit serve --grader -----------------------------------------------------------------------------------


def test_serve_grader_option_loads_the_grader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradekit.runtime import server

    grader = tmp_path / "g.json"
    grader.write_text(json.dumps(GRADER), encoding="utf-8")
    served: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: served.update(args=args, **kwargs))
    assert cli.main(["serve", "--port", "9123", "--grader", str(grader)]) == 0
    assert served["args"][:2] == ("127.0.0.1", 9123)
    assert served["grader"] == validate(GRADER)
    served.clear()
    assert cli.main(["serve"]) == 0
    assert served["grader"] is None


def test_serve_rejects_a_bad_grader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradekit.runtime import server

    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: pytest.fail("served with a bad grader"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "string_check", "name": "x"}), encoding="utf-8")
    assert cli.main(["serve", "--grader", str(bad)]) == 1
    assert "invalid grader" in capsys.readouterr().err
    assert cli.main(["serve", "--grader", str(tmp_path / "missing.json")]) == 1
    assert "missing.json" in capsys.readouterr().err


def test_create_app_keeps_the_grader() -> None:
    grader = validate(GRADER)
    assert create_app(grader=grader).state.grader is grader
    assert create_app().state.grader is None


def test_http_route_answers_strict_json_whatever_the_names_and_queries_hold() -> None:
    grader = validate(
        {
            "type": "multi",
            "name": "m",
            "graders": {
                "a\ud800": {
                    "type": "string_check",
                    "name": "a\ud800",
                    "input": "{{ sample.output_text }}",
                    "reference": "x",
                    "operation": "eq",
                }
            },
            "calculate_output": "1",
        }
    )
    with running(app_with_route(grader=grader)) as url:
        status, body = post(f"{url}{ROUTE}", {"query": ["x\ud800", "x"]})
    assert status == 200  # FastAPI's own serialiser refused the surrogate: a 500
    assert body == {
        "rewards": [1.0, 1.0],
        "scores": [1.0, 1.0],
        "extra_logs": {"a\ufffd": [0.0, 1.0], "error": [0.0, 0.0], "no_reward": [0.0, 0.0]},
    }
