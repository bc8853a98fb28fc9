"""string_check semantics, templates and sample building, through the public `run`/`run_batch`."""

from __future__ import annotations

import pytest

from gradekit.graders import StringCheck, run, run_batch


def check(op: str, input: str = "{{ sample.output_text }}", reference: str = "{{ item.answer }}") -> StringCheck:
    return StringCheck(name="check", input=input, reference=reference, operation=op)


@pytest.mark.parametrize(
    ("op", "sample", "answer", "reward"),
    [
        ("eq", "yes", "yes", 1.0),
        ("eq", "Yes", "yes", 0.0),
        ("eq", "yes ", "yes", 0.0),
        ("ne", "no", "yes", 1.0),
        ("ne", "yes", "yes", 0.0),
        ("like", "the answer is yes.", "yes", 1.0),
        ("like", "the answer is YES.", "yes", 0.0),
        ("ilike", "the answer is YES.", "yes", 1.0),
        ("ilike", "nope", "yes", 0.0),
        ("ilike", "the answer is yes.", "YES", 1.0),  # an upper-case reference: both sides are folded
        ("ilike", "ThE AnSwEr", "tHe aNsWeR", 1.0),
        ("ilike", "the answer is no.", "YES", 0.0),
        ("like", "anything", "", 1.0),
    ],
)
def test_operations(op: str, sample: str, answer: str, reward: float) -> None:
    r = run(check(op), sample, {"answer": answer})
    assert r.reward == reward
    assert r.errors.flags() == []
    assert r.metadata.name == "check"
    assert r.metadata.type == "string_check"


def test_output_json_and_indexing() -> None:
    g = check("eq", input="{{ sample.output_json.answers[1].value }}")
    assert run(g, '{"answers": [{"value": "a"}, {"value": "b"}]}', {"answer": "b"}).reward == 1.0


def test_non_string_values_render_as_json() -> None:
    g = check("eq", input="{{ sample.output_json.n }}", reference="{{ item.n }}")
    assert run(g, '{"n": 3}', {"n": 3}).reward == 1.0
    g = check("eq", input="{{ sample.output_json.obj }}", reference='{"a": [1, true, null]}')
    assert run(g, '{"obj": {"a": [1, true, null]}}').reward == 1.0


def test_undefined_variable_is_a_flag_not_an_exception() -> None:
    r = run(check("eq", input="{{ sample.output_json.missing }}"), '{"x": 1}', {"answer": "1"})
    assert r.reward == 0.0
    assert r.errors.flags() == ["invalid_variable_error"]
    failure = r.metadata.scores["error_details"]["check"]
    assert failure["flag"] == "invalid_variable_error"
    assert "sample.output_json.missing" in failure["message"]


def test_jinja_template_and_mixed_text() -> None:
    g = check("eq", input="{{ sample.output_text | upper }}!", reference="{{ item.answer }}!")
    assert run(g, "yes", {"answer": "YES"}).reward == 1.0
    g = check("eq", input="A: {{ sample.output_text }} / {{ item.id }}", reference="A: yes / 7")
    assert run(g, "yes", {"id": 7}).reward == 1.0
    g = check("eq", input="{{ sample.output_text | upper }}", reference="{{ item.nope }}")
    assert run(g, "yes", {"answer": "YES"}).errors.flags() == ["invalid_variable_error"]


def test_sandbox_blocks_attribute_escape() -> None:
    g = check("eq", input="{{ sample.output_text.__class__.__mro__ }}", reference="x")
    r = run(g, "yes")
    assert r.reward == 0.0
    assert r.errors.any


@pytest.mark.parametrize(
    "sample",
    [
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "yes"}, "finish_reason": "stop"}]},
        [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "yes"}],
        [{"role": "assistant", "content": [{"type": "output_text", "text": "yes"}]}],
        {"output_text": "yes"},
    ],
)
def test_sample_forms(sample: object) -> None:
    assert run(check("eq"), sample, {"answer": "yes"}).reward == 1.0  # type: ignore[arg-type]


def test_tool_call_path_from_chat_completion() -> None:
    completion = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
                },
            }
        ]
    }
    g = check("eq", input="{{ sample.output_tools[0].function.name }}", reference="lookup")
    assert run(g, completion).reward == 1.0


def test_bad_sample_is_sample_parse_error() -> None:
    r = run(check("eq"), [{"role": "user", "content": "no answer"}], {"answer": "x"})
    assert r.reward == 0.0
    assert r.errors.flags() == ["sample_parse_error"]


def test_batch_keeps_order_and_isolates_failures() -> None:
    samples = ["a", "b", "c", "d"]
    items = [{"answer": "a"}, {"answer": "x"}, {}, {"answer": "d"}]
    res = run_batch(check("eq"), samples, items)
    assert res.rewards == [1.0, 0.0, 0.0, 1.0]
    assert res.error_flags(2) == ["invalid_variable_error"]
    assert [r.reward for r in res] == [1.0, 0.0, 0.0, 1.0]
    assert res[-1].reward == 1.0
    assert len(res) == 4


def test_batch_mixed_sample_kinds() -> None:
    samples = ["yes", {"output_text": "yes"}, [{"role": "assistant", "content": "no"}]]
    res = run_batch(check("eq"), samples, [{"answer": "yes"}] * 3)
    assert res.rewards == [1.0, 1.0, 0.0]


def test_batch_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="pair up"):
        run_batch(check("eq"), ["a"], [{}, {}])


def test_run_inside_event_loop() -> None:
    import asyncio

    async def inside() -> float:
        return run(check("eq"), "a", {"answer": "a"}).reward

    assert asyncio.run(inside()) == 1.0
