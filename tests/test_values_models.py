"""Grader models (`graders/models.py`) by value: the checks of their definitions and the rewards they compute."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gradekit.graders import (
    GraderValidationError,
    GradingError,
    LabelModel,
    Multi,
    PythonGrader,
    ScoreModel,
    StringCheck,
    TextSimilarity,
    ToolCall,
    grader,
    run_batch,
    validate,
)
from gradekit.graders.executors import Call, Env, ModelGrade
from gradekit.graders.export import ExportError, to_openai
from gradekit.graders.limits import MAX_PYTHON_SOURCE_BYTES
from gradekit.graders.models import Message, endpoint_score, trace_id
from gradekit.graders.results import Outcome

JUDGE = [{"role": "user", "content": "{{ sample.output_text }}"}]


@pytest.mark.parametrize(
    ("operation", "pairs", "rewards"),
    [
        ("eq", [("a", "a"), ("a", "A"), ("ab", "a")], [1.0, 0.0, 0.0]),
        ("ne", [("a", "a"), ("a", "A"), ("ab", "a")], [0.0, 1.0, 1.0]),
        ("like", [("xAbx", "Ab"), ("xabx", "AB"), ("a", "ab"), ("a", "")], [1.0, 0.0, 0.0, 1.0]),
        ("ilike", [("xAbx", "aB"), ("XABX", "ab"), ("a", "AB"), ("a", "")], [1.0, 1.0, 0.0, 1.0]),
    ],
)
def test_string_check_operations(operation: str, pairs: list[tuple[str, str]], rewards: list[float]) -> None:
    grader = StringCheck(name="s", input="{{ sample.output_text }}", reference="{{ item.ref }}", operation=operation)
    result = run_batch(grader, [a for a, _ in pairs], [{"ref": b} for _, b in pairs])
    assert result.rewards == rewards


@pytest.mark.parametrize(
    ("reply", "score"),
    [({"score": 0.25}, 0.25), ({"score": 3}, 3.0), ({"score": -2.5, "why": "x"}, -2.5)],
)
def test_endpoint_score(reply: Any, score: float) -> None:
    assert endpoint_score(reply) == score


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ([0.5], 'endpoint replied [0.5], not {"score": number}'),
        ({"value": 1}, "endpoint replied {'value': 1}, not {\"score\": number}"),
        ({"score": True}, "endpoint's score is bool True, not a finite number"),
        ({"score": "0.5"}, "endpoint's score is str '0.5', not a finite number"),
        ({"score": math.inf}, "endpoint's score is float inf, not a finite number"),
        ({"score": None}, "endpoint's score is NoneType None, not a finite number"),
    ],
)
def test_endpoint_score_refuses(reply: Any, message: str) -> None:
    with pytest.raises(GradingError) as caught:
        endpoint_score(reply)
    assert (caught.value.flag, caught.value.message) == ("model_grader_parse_error", message)


def test_trace_id() -> None:
    first, second = trace_id(), trace_id()
    assert first.startswith("trace_") and len(first) == 6 + 32 and first != second
    int(first[6:], 16)


@pytest.mark.parametrize(
    ("result", "reward", "recorded"),
    [(0.5, 0.5, 0.5), (7.0, 2.0, 7.0), (-3.0, -1.0, -3.0), (None, -1.0, -1.0), (math.nan, -1.0, -1.0), (2.0, 2.0, 2.0)],
)
def test_score_model_reward_is_clipped_to_its_range(result: Any, reward: float, recorded: float) -> None:
    grader = ScoreModel(name="j", model="m", input=JUDGE, range=[-1.0, 2.0])
    scores: dict[str, Any] = {}
    assert grader._reward(result, None, scores) == reward
    assert scores == {"result": recorded}


@pytest.mark.parametrize("bad", [[1.0], [0.0, 1.0, 2.0], [1.0, 1.0], [2.0, 1.0], [0.0, math.inf], [math.nan, 1.0]])
def test_score_model_range_must_be_low_below_high(bad: list[float]) -> None:
    with pytest.raises(GraderValidationError, match="range must be two finite numbers"):
        validate({"type": "score_model", "name": "j", "model": "m", "input": JUDGE, "range": bad})


def test_label_model_reward_and_labels() -> None:
    grader = LabelModel(name="l", model="m", input=JUDGE, labels=["a", "b", "c"], passing_labels=["a", "c"])
    scores: dict[str, Any] = {}
    assert [grader._reward(None, label, scores) for label in ("a", "b", "c", None)] == [1.0, 0.0, 1.0, 0.0]
    assert scores == {"label": None}
    with pytest.raises(GraderValidationError, match="labels must not be empty"):
        validate({"type": "label_model", "name": "l", "model": "m", "input": JUDGE, "labels": [], "passing_labels": []})
    with pytest.raises(GraderValidationError, match=r"passing_labels \['d'\] are not in labels \['a'\]"):
        validate(
            {"type": "label_model", "name": "l", "model": "m", "input": JUDGE, "labels": ["a"], "passing_labels": ["d"]}
        )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def grade(sample):\n    return 1\n", "`grade` must take exactly two positional arguments"),
        ("def grade(a, b, c):\n    return 1\n", "`grade` must take exactly two positional arguments"),
        ("def grade(a, b, *rest):\n    return 1\n", "`grade` must take exactly two positional arguments"),
        ("def grade(a, b, *, k):\n    return 1\n", "`grade` must take exactly two positional arguments"),
        ("def other(a, b):\n    return 1\n", "source defines no top-level function `grade(sample, item)`"),
        ("def grade(a, b:\n", "source does not parse: "),
        ("x = " + "(" * 300 + ")" * 300, "source does not parse: too many nested parentheses (line 1)"),
        ("x = " + "-" * 100_000 + "1", "source nests too deeply to parse"),
        ("x = 1" + "+1" * 100_000, "source nests too deeply to parse"),
        ("x = '\ud800'", "source does not parse: "),
    ],
)
def test_python_source_checks(source: str, message: str) -> None:
    with pytest.raises(GraderValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate({"type": "python", "name": "p", "source": source})


@pytest.mark.parametrize(
    "source",
    [
        "def grade(a, b):\n    return 1\n",
        "async def grade(a, /, b, *, k=1):\n    return 1\n",
        "x = 1\ndef grade(a, b=None):\n    return x\n",
    ],
)
def test_python_source_accepted(source: str) -> None:
    assert validate({"type": "python", "name": "p", "source": source}).source == source


def test_python_source_size_limit_is_inclusive() -> None:
    body = "def grade(a, b):\n    return 1\n"
    exact = body + "#" * (MAX_PYTHON_SOURCE_BYTES - len(body))
    assert isinstance(validate({"type": "python", "name": "p", "source": exact}), PythonGrader)
    with pytest.raises(GraderValidationError, match=f"source is {MAX_PYTHON_SOURCE_BYTES + 1} bytes"):
        validate({"type": "python", "name": "p", "source": exact + "#"})


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.com/grade", True),
        ("http://127.0.0.1:8080/x", True),
        ("http://host:1", True),
        ("ftp://example.com", False),
        ("https://", False),
        ("http://host:0/x", False),
        ("http://host:70000/x", False),
        ("http://host/a b", False),
    ],
)
def test_endpoint_url_check(url: str, ok: bool) -> None:
    definition = {"type": "endpoint", "name": "e", "url": url}
    if ok:
        assert validate(definition).url == url
    else:
        with pytest.raises(GraderValidationError):
            validate(definition)


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"Authorization": "Bearer x", "X-Functions-Key": "k"}, None),
        ({"Bad Name": "x"}, "'Bad Name' is not an HTTP header name"),
        ({"X-Key": "a\r\nInjected: 1"}, "the value of header 'X-Key' holds a control character"),
        ({"X-Key": "tab\tis fine"}, None),
    ],
)
def test_endpoint_header_check(headers: dict[str, str], problem: str | None) -> None:
    definition = {"type": "endpoint", "name": "e", "url": "https://example.com", "headers": headers}
    if problem is None:
        assert validate(definition).headers == headers
    else:
        with pytest.raises(GraderValidationError, match=problem):
            validate(definition)


# --- text_similarity: what a metric's scores become ----------------------------------------------------------


def _settled(scores: list[Any], good: list[int] | None = None, n: int | None = None) -> tuple[list[Any], list[Any]]:
    """Rewards and failure messages after `_settle` of `scores` for the samples `good` of `n`."""
    grader = TextSimilarity(name="t", input="a", reference="b", evaluation_metric="fuzzy_match")
    n = len(scores) if n is None else n
    out = Outcome.empty(n)
    grader._settle(out, list(range(n)) if good is None else good, scores)
    return out.rewards, [None if note is None else note.failures["t"][1] for note in out.notes]


def test_scores_in_range_are_the_rewards() -> None:
    assert _settled([0.0, 1.0, 0.25]) == ([0.0, 1.0, 0.25], [None, None, None])
    rewards, _ = _settled([1, 0])  # ints become floats
    assert rewards == [1.0, 0.0] and all(type(r) is float for r in rewards)
    assert _settled([0.5, 0.75], good=[0, 2], n=3) == ([0.5, 0.0, 0.75], [None, None, None])
    assert _settled([], good=[], n=2) == ([0.0, 0.0], [None, None])


def test_scores_out_of_range_or_not_numbers_fail_their_sample() -> None:
    rewards, failures = _settled([0, 1, 1.5, -0.25, math.nan, "x", 0.5])
    assert rewards == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5]
    assert failures == [
        None,
        None,
        "fuzzy_match gave 1.5, not in [0, 1]",
        "fuzzy_match gave -0.25, not in [0, 1]",
        "fuzzy_match gave nan, not in [0, 1]",
        "fuzzy_match gave 'x', not in [0, 1]",
        None,
    ]
    assert _settled([1.5, 0.5])[1] == ["fuzzy_match gave 1.5, not in [0, 1]", None]
    assert _settled([-0.5, 0.5])[1] == ["fuzzy_match gave -0.5, not in [0, 1]", None]
    assert _settled([math.nan, 0.5])[1] == ["fuzzy_match gave nan, not in [0, 1]", None]


def test_a_metric_that_gives_the_wrong_number_of_scores_fails_every_sample() -> None:
    assert _settled([0.5, 0.5], good=[0, 1, 2], n=3) == ([0.0] * 3, ["fuzzy_match: 2 scores for 3 pairs"] * 3)


# --- multi ---------------------------------------------------------------------------------------------------


def test_multi_rewards_and_zeroing() -> None:
    @grader
    def half(sample: dict[str, Any]) -> float | None:
        return None if sample["output_text"] == "skip" else 0.5

    @grader
    def bad(sample: dict[str, Any]) -> float:
        if sample["output_text"] == "fail":
            raise GradingError("sample_parse_error", "no")
        return 1.0

    multi = Multi(name="m", graders={"h": half, "b": bad}, calculate_output="h + b")
    result = run_batch(multi, ["ok", "skip", "fail"], [{}, {}, {}])
    assert result.rewards == [1.5, 0.0, 0.0]
    assert result.rewards_or_none() == [1.5, None, 0.0]
    assert result.sub_rewards == {"h": [0.5, 0.0, 0.5], "b": [1.0, 1.0, 0.0]}


def test_multi_evaluates_sample_by_sample_when_a_column_holds_a_non_number() -> None:
    multi = Multi(
        name="m", graders={"a": StringCheck(input="x", reference="x", operation="eq")}, calculate_output="a * 2"
    )
    rewards, errors = multi._evaluate({"a": [1.5, "x", 0.25]}, 3)  # type: ignore[list-item]
    assert rewards == [3.0, 0.0, 0.5]
    assert list(errors) == [1] and "TypeError" in errors[1]


def test_multi_names_its_sub_graders() -> None:
    check = {"type": "string_check", "input": "x", "reference": "x", "operation": "eq"}
    multi = validate(
        {
            "type": "multi",
            "name": "m",
            "calculate_output": "a + b",
            "graders": {"a": check, "b": {**check, "name": "own"}},
        }
    )
    assert [(k, g.name) for k, g in multi.graders.items()] == [("a", "a"), ("b", "own")]
    unnamed = StringCheck(input="x", reference="x", operation="eq")
    multi = Multi(name="m", graders={"k": unnamed}, calculate_output="k")
    assert multi.graders["k"].name == "k" and unnamed.name == "string_check"
    named = StringCheck(name="mine", input="x", reference="x", operation="eq")
    assert Multi(name="m", graders={"k": named}, calculate_output="k").graders["k"].name == "mine"
    # OpenAI's SDK form: one grader, keyed by its name
    one = validate({"type": "multi", "name": "m", "calculate_output": "own", "graders": {**check, "name": "own"}})
    assert list(one.graders) == ["own"]
    assert list(Multi(name="m", graders=named, calculate_output="mine").graders) == ["mine"]


# --- definitions ---------------------------------------------------------------------------------------------


def test_numbers_in_definitions_are_finite_and_bounded() -> None:
    similarity = {"type": "text_similarity", "name": "s", "input": "a", "reference": "b", "evaluation_metric": "bleu"}
    with pytest.raises(GraderValidationError):
        validate({**similarity, "pass_threshold": math.inf})
    params = {"max_completions_tokens": 2**31 - 1, "seed": 2**63 - 1}
    judge = validate({"type": "score_model", "name": "j", "model": "m", "input": JUDGE, "sampling_params": params})
    assert judge.sampling_params.max_completions_tokens == 2**31 - 1 and judge.sampling_params.seed == 2**63 - 1
    assert validate(
        {"type": "score_model", "name": "j", "model": "m", "input": JUDGE, "sampling_params": {"seed": -(2**63)}}
    )
    endpoint = validate({"type": "endpoint", "name": "e", "url": "https://example.com", "rate_limit": 2**31 - 1})
    assert endpoint.rate_limit == 2**31 - 1


def test_an_endpoint_has_no_openai_form() -> None:
    with pytest.raises(ExportError, match="grader 'e' of type 'endpoint' has no OpenAI form"):
        to_openai(validate({"type": "endpoint", "name": "e", "url": "https://example.com"}))


def test_tool_call_schema_mode_needs_tools() -> None:
    with pytest.raises(GraderValidationError, match="arguments='schema' needs `tools`"):
        validate({"type": "tool_call", "name": "t", "arguments": "schema"})
    ok = validate({"type": "tool_call", "name": "t", "arguments": "schema", "tools": "{{ item.tools }}"})
    assert isinstance(ok, ToolCall) and ok.arguments == "schema"
    assert validate({"type": "tool_call", "name": "t", "arguments": "exact"}).tools is None


def test_long_templates_compile_and_render() -> None:
    long = "{{ sample.output_text }}" + " " * 5000 + "|"
    check = StringCheck(name="s", input=long, reference="{{ item.r }}" + " " * 5000 + "|", operation="eq")
    assert run_batch(check, ["a", "b"], [{"r": "a"}, {"r": "a"}]).rewards == [1.0, 0.0]


def test_judge_messages_keep_their_content_forms() -> None:
    parts = [{"type": "input_text", "text": "{{ sample.output_text }}"}, {"type": "input_image", "image_url": "u"}]
    judge = validate(
        {"type": "score_model", "name": "j", "model": "m", "input": [{"role": "user", "content": parts}, *JUDGE]}
    )
    assert judge.input[0].content == parts and judge.input[1].content == JUDGE[0]["content"]


# --- model graders through a recording model client ----------------------------------------------------------


class Recording:
    """A `ModelClient` that answers `grades` in order and keeps the messages it was asked about."""

    def __init__(self, *grades: ModelGrade) -> None:
        self.grades, self.asked = list(grades), []

    async def grade(self, grader: Any, messages: Any) -> list[ModelGrade]:
        self.asked.extend(messages)
        return self.grades[: len(messages)]


def test_a_judge_sees_the_rendered_messages_of_the_samples_that_rendered() -> None:
    content = [
        {"type": "input_text", "text": "rate {{ sample.output_text }}"},
        {"type": "input_image", "image_url": "u"},
    ]
    judge = ScoreModel(
        name="j",
        model="m",
        input=[Message(role="system", content="be fair"), Message(role="user", content=content)],
        range=[0.0, 10.0],
    )
    client = Recording(
        ModelGrade(result=7.0, model="judge-1", usage={"total_tokens": 12, "prompt_tokens": 10, "odd": "x"}),
        ModelGrade(error=GradingError("model_grader_parse_error", "not a number"), model="judge-1"),
    )
    samples: list[Any] = ["A", {"output_text": 3}, "B"]  # the second cannot render: the judge never sees it
    result = run_batch(judge, samples, [{}, {}, {}], env=Env(model=client))
    assert client.asked == [
        [
            {"role": "system", "content": "be fair"},
            {"role": "user", "content": [{"type": "input_text", "text": "rate A"}, content[1]]},
        ],
        [
            {"role": "system", "content": "be fair"},
            {"role": "user", "content": [{"type": "input_text", "text": "rate B"}, content[1]]},
        ],
    ]
    assert result.rewards == [7.0, 0.0, 0.0]
    assert result[0].metadata.scores == {"result": 7.0}
    assert (result[0].metadata.token_usage, result[0].metadata.sampled_model_name) == (12, "judge-1")
    assert result[0].model_grader_token_usage_per_model == {"judge-1": {"total_tokens": 12, "prompt_tokens": 10}}
    assert result.error_flags(1) == ["sample_parse_error"] and result.error_flags(2) == ["model_grader_parse_error"]


def test_a_judge_without_a_model_client_fails_only_the_samples_that_rendered() -> None:
    judge = ScoreModel(name="l", model="m", input=JUDGE)
    result = run_batch(judge, ["x", {"output_text": 3}], [{}, {}], env=Env())
    assert [result.error_flags(i) for i in range(2)] == [["model_grader_server_error"], ["sample_parse_error"]]
    assert result.rewards_or_none() == [None, 0.0]
    nothing = run_batch(judge, [{"output_text": 3}], [{}], env=Env(model=Recording()))
    assert nothing.error_flags(0) == ["sample_parse_error"]


# --- graders that call out: an endpoint, a python grader, an embedder ----------------------------------------


class Replies:
    """An `EndpointCaller` answering `calls` in order and keeping the bodies it was sent."""

    def __init__(self, *calls: Call) -> None:
        self.calls, self.bodies = list(calls), []

    async def post(self, grader: Any, bodies: Any) -> list[Call]:
        self.bodies.extend(bodies)
        return self.calls[: len(bodies)]


def test_an_endpoint_posts_each_readable_sample_and_reads_its_score() -> None:
    endpoint = validate({"type": "endpoint", "name": "e", "url": "https://example.com"})
    replies = Replies(Call(value={"score": 2.5}), Call(value={"nope": 1}))
    result = run_batch(endpoint, ["a", {"output_text": 3}, "b"], [{"k": 1}, {}, {"k": 2}], env=Env(endpoint=replies))
    assert [(b["sample"]["output_text"], b["item"]) for b in replies.bodies] == [("a", {"k": 1}), ("b", {"k": 2})]
    assert all(b["trace_id"].startswith("trace_") for b in replies.bodies)
    assert result.rewards == [2.5, 0.0, 0.0]
    assert [result.error_flags(i) for i in range(3)] == [[], ["sample_parse_error"], ["model_grader_parse_error"]]
    message = result[2].metadata.scores["error_details"]["e"]["message"]
    assert message.endswith(f"(trace_id {replies.bodies[1]['trace_id']})")
    unconfigured = run_batch(endpoint, ["a"], [{}], env=Env())
    assert unconfigured.error_flags(0) == ["unresponsive_reward_error"]
    nothing = Replies()
    assert run_batch(endpoint, [{"output_text": 3}], [{}], env=Env(endpoint=nothing)).rewards == [0.0]
    assert nothing.bodies == []


def test_a_python_grader_reward_none_and_error() -> None:
    source = (
        "def grade(sample, item):\n"
        "    if item['k'] == 'none':\n"
        "        return None\n"
        "    if item['k'] == 'raise':\n"
        "        raise ValueError('no')\n"
        "    return 0.25\n"
    )
    python = validate({"type": "python", "name": "p", "source": source})
    result = run_batch(python, ["a", "b", "c"], [{"k": "x"}, {"k": "none"}, {"k": "raise"}])
    assert result.rewards_or_none() == [0.25, None, 0.0]
    assert result.error_flags(2) == ["python_grader_runtime_error"]


class Failing:
    """An `Embedder` whose endpoint is down."""

    def embed(self, texts: Any) -> list[list[float]]:
        raise ConnectionError("refused")


def test_a_failed_embedding_endpoint_gives_no_reward_and_a_fuzzy_metric_scores() -> None:
    cosine = TextSimilarity(name="c", input="{{ sample.output_text }}", reference="b", evaluation_metric="cosine")
    result = run_batch(cosine, ["a", "b"], [{}, {}], env=Env(embedder=Failing()))
    assert result.rewards_or_none() == [None, None]
    assert result.error_flags(0) == ["other_error"]
    fuzzy = TextSimilarity(name="f", input="{{ sample.output_text }}", reference="abc", evaluation_metric="fuzzy_match")
    assert run_batch(fuzzy, ["abc", "xyz"], [{}, {}]).rewards == [1.0, 0.0]


def test_tool_call_matches_in_any_order_unless_ordered() -> None:
    first = {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    second = {"id": "2", "type": "function", "function": {"name": "g", "arguments": "{}"}}
    samples = [{"output_text": "", "output_tools": [second, first]}, {"output_text": "", "output_tools": [first]}]
    items = [{"expected_tool_calls": [first, second]}] * 2
    result = run_batch(validate({"type": "tool_call", "name": "t"}), samples, items)
    assert result.rewards == [1.0, 0.5]
    assert result[1].metadata.scores == {"matched": 1, "expected": 2, "actual": 1}
    ordered = validate({"type": "tool_call", "name": "t", "ordered": True})
    assert run_batch(ordered, samples[:1], items[:1]).rewards == [0.0]


def test_a_nan_after_a_number_fails_its_sample() -> None:
    assert _settled([0.5, math.nan]) == ([0.5, 0.0], [None, "fuzzy_match gave nan, not in [0, 1]"])
