"""Tests for gradekit.graders.tool_calls."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradekit.graders import run_batch, tool_calls
from gradekit.graders.errors import ERROR_FLAGS, GradingError
from gradekit.graders.tool_calls import ToolCallScore, score_tool_calls


def oa(name: str, arguments: Any, call_id: str = "call_1") -> dict[str, Any]:
    """An OpenAI chat-completions tool call; dict arguments are serialised to the JSON string form."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def flat(name: str, arguments: Any = None) -> dict[str, Any]:
    """A flattened call `{"name", "arguments"}`; arguments omitted when None."""
    return {"name": name} if arguments is None else {"name": name, "arguments": arguments}


WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "units": {"type": "string", "enum": ["C", "F"]},
        "days": {"type": "integer", "minimum": 1},
    },
    "required": ["city"],
    "additionalProperties": False,
}
TIME_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather.", "parameters": WEATHER_SCHEMA},
    },
    {"type": "function", "function": {"name": "get_time", "parameters": TIME_SCHEMA}},
]
FLAT_TOOLS: list[dict[str, Any]] = [
    {"name": "get_weather", "parameters": WEATHER_SCHEMA},
    {"name": "get_time", "parameters": TIME_SCHEMA},
]

PARIS = {"city": "Paris"}
PARIS_C = {"city": "Paris", "units": "C"}


def flag_of(excinfo: pytest.ExceptionInfo[GradingError]) -> str:
    return excinfo.value.flag


# --- argument modes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "actual_args", "expected_args", "ok"),
    [
        ("exact", PARIS, PARIS, True),
        ("exact", {"n": 1}, {"n": 1.0}, True),
        ("exact", {"n": True}, {"n": 1}, False),
        ("exact", {"n": 0}, {"n": False}, False),
        ("exact", {"n": None}, {}, False),
        ("exact", PARIS_C, PARIS, False),
        ("exact", PARIS, PARIS_C, False),
        ("exact", {"city": "paris"}, PARIS, False),
        ("exact", {"a": [1, 2]}, {"a": [1, 2]}, True),
        ("exact", {"a": [2, 1]}, {"a": [1, 2]}, False),
        ("exact", {"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, False),
        ("exact", {}, {}, True),
        ("subset", PARIS_C, PARIS, True),
        ("subset", PARIS, PARIS_C, False),
        ("subset", {"city": "London", "units": "C"}, PARIS, False),
        ("subset", {"x": 1}, {}, True),
        ("subset", {"n": 2.0}, {"n": 2}, True),
        ("subset", {"n": True}, {"n": 1}, False),
        (
            "subset",
            {"loc": {"city": "Paris", "country": "FR", "geo": {"lat": 48.9, "lon": 2.35}}},
            {"loc": {"city": "Paris", "geo": {"lat": 48.9}}},
            True,
        ),
        ("subset", {"loc": {"city": "Paris", "geo": {"lon": 2.35}}}, {"loc": {"geo": {"lat": 48.9}}}, False),
        ("subset", {"loc": "Paris"}, {"loc": {"city": "Paris"}}, False),
        ("subset", {"items": [{"id": 1, "q": 2}, {"id": 2}]}, {"items": [{"id": 1}, {"id": 2}]}, True),
        ("subset", {"items": [{"id": 1}, {"id": 2}, {"id": 3}]}, {"items": [{"id": 1}, {"id": 2}]}, False),
        ("subset", {"items": [{"id": 2}, {"id": 1}]}, {"items": [{"id": 1}, {"id": 2}]}, False),
    ],
)
def test_argument_modes(mode: str, actual_args: dict[str, Any], expected_args: dict[str, Any], ok: bool) -> None:
    score = score_tool_calls([oa("f", actual_args)], [flat("f", expected_args)], arguments=mode)  # type: ignore[arg-type]
    assert (score.reward, score.matched, score.expected, score.actual) == (float(ok), int(ok), 1, 1)
    assert len(score.details) == 1
    assert (score.details[0] == "expected[0] f: matched actual[0]") is ok


@pytest.mark.parametrize(
    ("actual_args", "expected_args", "tools", "ok", "why"),
    [
        (PARIS, None, TOOLS, True, None),
        (PARIS_C, None, FLAT_TOOLS, True, None),
        ({"city": "Paris", "days": 3}, PARIS, TOOLS, True, None),
        ({"units": "C"}, None, TOOLS, False, "'city' is a required property"),
        ({"city": 75001}, None, TOOLS, False, "is not of type 'string'"),
        ({"city": "Paris", "days": "3"}, None, TOOLS, False, "$.days"),
        ({"city": "Paris", "units": "K"}, None, TOOLS, False, "is not one of"),
        ({"city": "Paris", "wind": True}, None, TOOLS, False, "Additional properties"),
        # valid for the schema, but the expected arguments must also be a subset
        ({"city": "London"}, PARIS, TOOLS, False, 'arguments.city: expected "Paris", got "London"'),
        (PARIS, PARIS_C, TOOLS, False, "arguments.units: missing"),
        # tool present but without a `parameters` schema, and tool absent from `tools`
        (PARIS, None, [{"name": "get_weather"}], False, "no parameters schema for get_weather"),
        (PARIS, None, [{"name": "get_time", "parameters": TIME_SCHEMA}], False, "no parameters schema"),
        (PARIS, None, [], False, "no parameters schema"),
        (PARIS, None, json.dumps(TOOLS), True, None),
        ({}, None, [{"name": "get_weather", "parameters": True}], True, None),
        (PARIS, None, [{"name": "get_weather", "parameters": False}], False, "False schema"),
    ],
)
def test_schema_mode(
    actual_args: dict[str, Any], expected_args: dict[str, Any] | None, tools: Any, ok: bool, why: str | None
) -> None:
    score = score_tool_calls(
        [oa("get_weather", actual_args)],
        [flat("get_weather", expected_args)],
        arguments="schema",
        tools=tools,
    )
    assert (score.matched, score.reward) == ((1, 1.0) if ok else (0, 0.0))
    if why is not None:
        assert why in score.details[0]


def test_schema_mode_validates_each_call_against_its_own_tool() -> None:
    actual = [oa("get_time", {"tz": "UTC"}), oa("get_weather", {"city": "Oslo"}), oa("get_time", {})]
    expected = [flat("get_weather"), flat("get_time"), flat("get_time")]
    score = score_tool_calls(actual, expected, arguments="schema", tools=TOOLS)
    assert (score.matched, score.expected, score.actual) == (2, 3, 3)
    assert score.details[0] == "expected[0] get_weather: matched actual[1]"
    assert score.details[1] == "expected[1] get_time: matched actual[0]"
    assert "each fitting call is matched to another expected call" in score.details[2]


def test_schema_validators_are_cached() -> None:
    tool_calls._compile.cache_clear()
    for _ in range(3):
        score_tool_calls([oa("get_weather", PARIS)], [flat("get_weather")], arguments="schema", tools=TOOLS)
    info = tool_calls._compile.cache_info()
    assert info.misses == 2  # one per distinct schema (weather, time)
    assert info.hits == 4


# --- ordered vs unordered, missing, extra, duplicated ---------------------------------------------------

A = flat("a", {"x": 1})
B = flat("b", {"y": 2})
C = flat("c", {})


@pytest.mark.parametrize(
    ("actual", "expected", "ordered", "matched", "reward"),
    [
        ([A, B], [A, B], False, 2, 1.0),
        ([A, B], [A, B], True, 2, 1.0),
        ([B, A], [A, B], False, 2, 1.0),
        ([B, A], [A, B], True, 0, 0.0),
        ([A, C, B], [A, B], True, 1, 1 / 3),
        ([A, C, B], [A, B], False, 2, 2 / 3),
        # missing calls
        ([A], [A, B], False, 1, 0.5),
        ([A], [A, B], True, 1, 0.5),
        ([], [A, B], False, 0, 0.0),
        ([], [A, B], True, 0, 0.0),
        # extra calls are penalised through the denominator
        ([A, B, C], [A, B], False, 2, 2 / 3),
        ([A, B, C], [A, B], True, 2, 2 / 3),
        ([A, A], [A], False, 1, 0.5),
        # empty expectations
        ([], [], False, 0, 1.0),
        ([], [], True, 0, 1.0),
        ([A], [], False, 0, 0.0),
        ([A], [], True, 0, 0.0),
        # duplicated expected calls need as many actual calls
        ([A], [A, A], False, 1, 0.5),
        ([A, A], [A, A], False, 2, 1.0),
        ([A, B, A], [A, A], False, 2, 2 / 3),
        ([A, A, A], [A, A], False, 2, 2 / 3),
        ([A, A], [A, A], True, 2, 1.0),
        ([A, B], [A, A], True, 1, 0.5),
    ],
)
def test_ordering_and_counts(
    actual: list[Any], expected: list[Any], ordered: bool, matched: int, reward: float
) -> None:
    score = score_tool_calls(actual, expected, ordered=ordered)
    assert score.matched == matched
    assert score.reward == pytest.approx(reward)
    assert (score.expected, score.actual) == (len(expected), len(actual))
    assert len(score.details) == len(expected)


def test_unordered_details() -> None:
    actual = [oa("get_weather", {"city": "London"}), oa("get_weather", PARIS), oa("get_time", {"tz": "UTC"})]
    expected = [flat("get_weather", PARIS), flat("get_weather", PARIS), flat("search", {"q": "x"})]
    score = score_tool_calls(actual, expected)
    assert score.details == [
        "expected[0] get_weather: matched actual[1]",
        "expected[1] get_weather: not matched: each fitting call is matched to another expected call",
        "expected[2] search: not matched: no call to search",
    ]
    score = score_tool_calls(actual[:1], expected[:1])
    assert score.details == [
        "expected[0] get_weather: not matched: none of 1 call(s) to it fits; "
        'actual[0]: arguments.city: expected "Paris", got "London"'
    ]


def test_ordered_details() -> None:
    actual = [oa("get_weather", PARIS), oa("get_time", {"tz": "UTC"}), oa("get_weather", {"city": "Rome"})]
    expected = [flat("get_weather", PARIS), flat("get_weather", PARIS), flat("get_weather", PARIS), A]
    score = score_tool_calls(actual, expected, ordered=True)
    assert score.details == [
        "expected[0] get_weather: matched actual[0]",
        "expected[1] get_weather: not matched: actual[1]: calls get_time",
        'expected[2] get_weather: not matched: actual[2]: arguments.city: expected "Paris", got "Rome"',
        "expected[3] a: not matched: no actual call at position 3",
    ]
    assert score.reward == pytest.approx(1 / 4)


def test_exact_mode_reports_unexpected_keys() -> None:
    score = score_tool_calls([oa("f", {"a": 1, "b": 2, "c d": 3})], [flat("f", {"a": 1})])
    assert score.details == [
        'expected[0] f: not matched: none of 1 call(s) to it fits; actual[0]: unexpected arguments.b, arguments["c d"]'
    ]


# --- maximal matching -----------------------------------------------------------------------------------


def test_unordered_matching_is_maximal_where_greedy_fails() -> None:
    # A greedy pass gives actual[0] (the first fit) to expected[0], leaving expected[1] with nothing;
    # the maximum matching pairs expected[0] with actual[1] instead.
    actual = [oa("get_weather", PARIS_C), oa("get_weather", {"city": "Paris", "units": "F"})]
    expected = [flat("get_weather", PARIS), flat("get_weather", PARIS_C)]
    score = score_tool_calls(actual, expected, arguments="subset")
    assert score.matched == 2
    assert score.reward == 1.0
    assert score.details == [
        "expected[0] get_weather: matched actual[1]",
        "expected[1] get_weather: matched actual[0]",
    ]


def brute_force_matching(edges: list[list[bool]]) -> int:
    """Size of a maximum matching by trying every assignment (fine for tiny graphs)."""
    n_left = len(edges)
    n_right = len(edges[0]) if edges else 0
    best = 0
    rights = [*range(n_right), *([None] * n_left)]
    for chosen in itertools.permutations(rights, n_left):
        best = max(best, sum(r is not None and edges[i][r] for i, r in enumerate(chosen)))
    return best


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 4).flatmap(
        lambda n_left: st.integers(0, 4).flatmap(
            lambda n_right: st.lists(
                st.lists(st.booleans(), min_size=n_right, max_size=n_right), min_size=n_left, max_size=n_left
            ).map(lambda rows: (rows, n_right))
        )
    )
)
def test_unordered_matching_equals_brute_force(graph: tuple[list[list[bool]], int]) -> None:
    # In subset mode expected[i] = {"e<i>": true} fits actual[j] iff actual[j] has key "e<i>",
    # which realises any bipartite graph.
    edges, n_right = graph
    expected = [flat("f", {f"e{i}": True}) for i in range(len(edges))]
    actual = [oa("f", {f"e{i}": True for i, row in enumerate(edges) if row[j]}) for j in range(n_right)]
    score = score_tool_calls(actual, expected, arguments="subset")
    assert score.matched == brute_force_matching(edges)
    used = [d.rsplit("actual[", 1)[1] for d in score.details if ": matched actual[" in d]
    assert len(used) == len(set(used)) == score.matched


# --- accepted input forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "actual",
    [
        [oa("get_weather", PARIS)],
        [{"type": "function", "function": {"name": "get_weather", "arguments": PARIS}}],
        [{"name": "get_weather", "arguments": json.dumps(PARIS)}],
        [{"name": "get_weather", "arguments": PARIS}],
        [{"name": "get_weather", "arguments": '  {"city":  "Paris"}\n'}],
        ({"name": "get_weather", "arguments": PARIS},),
    ],
)
@pytest.mark.parametrize(
    "expected",
    [
        [flat("get_weather", PARIS)],
        [flat("get_weather", json.dumps(PARIS))],
        [oa("get_weather", PARIS)],
        json.dumps([flat("get_weather", PARIS)]),
        json.dumps([oa("get_weather", PARIS)]),
    ],
)
def test_accepted_forms(actual: Any, expected: Any) -> None:
    assert score_tool_calls(actual, expected).reward == 1.0


@pytest.mark.parametrize("blank", ["", "  ", None])
def test_blank_or_missing_actual_arguments_mean_no_arguments(blank: str | None) -> None:
    actual = [{"type": "function", "function": {"name": "now", "arguments": blank}}]
    assert score_tool_calls(actual, [flat("now", {})]).reward == 1.0
    assert score_tool_calls([{"name": "now"}], [flat("now", {})]).reward == 1.0


def test_names_must_match_exactly() -> None:
    assert score_tool_calls([oa("Get_Weather", PARIS)], [flat("get_weather", PARIS)]).reward == 0.0


def test_result_is_frozen() -> None:
    score = score_tool_calls([], [])
    assert score == ToolCallScore(1.0, 0, 0, 0, [])
    with pytest.raises(AttributeError):
        score.reward = 0.5  # type: ignore[misc]


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "needle"),
    [
        ([oa("get_weather", '{"city": "Paris"')], "tool call 0 (get_weather)"),
        ([oa("get_weather", "{'city': 'Paris'}")], "not valid JSON"),
        ([oa("get_weather", "city=Paris")], "not valid JSON"),
        ([oa("get_weather", '["Paris"]')], "must be a JSON object"),
        ([oa("get_weather", '"Paris"')], "must be a JSON object"),
        ([oa("get_weather", "null")], "must be a JSON object"),
        ([oa("get_weather", '{"n": NaN}')], "NaN"),
        ([oa("a", {}), oa("get_weather", "{")], "tool call 1 (get_weather)"),
        ([{"name": "get_weather", "arguments": 42}], "JSON object string"),
        ([{"name": "get_weather", "arguments": ["Paris"]}], "JSON object string"),
        ([{"arguments": "{}"}], "no function name"),
        ([{"type": "function", "function": {"arguments": "{}"}}], "no function name"),
        ([{"name": "", "arguments": "{}"}], "no function name"),
        ([{"name": 7, "arguments": "{}"}], "no function name"),
        (["get_weather"], "not an object"),
        ({"name": "get_weather", "arguments": "{}"}, "must be a list"),
        ('[{"name": "get_weather", "arguments": "{}"}]', "must be a list"),
        (None, "must be a list"),
    ],
)
def test_malformed_actual_is_sample_parse_error(actual: Any, needle: str) -> None:
    with pytest.raises(GradingError) as excinfo:
        score_tool_calls(actual, [flat("get_weather", PARIS)])
    assert flag_of(excinfo) == "sample_parse_error"
    assert needle in excinfo.value.message


@pytest.mark.parametrize(
    ("expected", "mode", "needle"),
    [
        ({"name": "get_weather", "arguments": PARIS}, "exact", "must be a list"),
        ("not json", "exact", "not valid JSON"),
        ('{"name": "get_weather"}', "exact", "must be a list"),
        (None, "exact", "must be a list"),
        (42, "subset", "must be a list"),
        ([{"arguments": PARIS}], "exact", "no function name"),
        ([{"name": None, "arguments": PARIS}], "subset", "no function name"),
        ([{"name": "get_weather", "arguments": PARIS}, "get_time"], "exact", "expected tool call 1"),
        ([{"name": "get_weather", "arguments": "{bad"}], "exact", "not valid JSON"),
        ([{"name": "get_weather", "arguments": "[1]"}], "subset", "must be a JSON object"),
        ([{"name": "get_weather", "arguments": 3}], "exact", "JSON object string"),
        ([{"name": "get_weather"}], "exact", "has no arguments"),
        ([{"name": "get_weather"}], "subset", "has no arguments"),
        ([{"name": "get_weather", "arguments": "{bad"}], "schema", "not valid JSON"),
    ],
)
def test_malformed_expected_is_invalid_variable_error(expected: Any, mode: str, needle: str) -> None:
    with pytest.raises(GradingError) as excinfo:
        score_tool_calls([oa("get_weather", PARIS)], expected, arguments=mode, tools=TOOLS)  # type: ignore[arg-type]
    assert flag_of(excinfo) == "invalid_variable_error"
    assert needle in excinfo.value.message


def test_malformed_expected_is_reported_before_malformed_actual() -> None:
    with pytest.raises(GradingError) as excinfo:
        score_tool_calls("nope", "nope")
    assert flag_of(excinfo) == "invalid_variable_error"


@pytest.mark.parametrize(
    ("tools", "needle"),
    [
        (None, "needs `tools`"),
        ({"name": "get_weather", "parameters": WEATHER_SCHEMA}, "must be a list"),
        ("[{", "not valid JSON"),
        ([42], "tool 0 is not an object"),
        ([{"parameters": WEATHER_SCHEMA}], "tool 0 has no name"),
        ([{"type": "function", "function": {"parameters": WEATHER_SCHEMA}}], "tool 0 has no name"),
        ([*FLAT_TOOLS, {"name": "get_weather", "parameters": {}}], "defined more than once"),
    ],
)
def test_bad_tools_are_invalid_variable_error(tools: Any, needle: str) -> None:
    with pytest.raises(GradingError) as excinfo:
        score_tool_calls([oa("get_weather", PARIS)], [flat("get_weather")], arguments="schema", tools=tools)
    assert flag_of(excinfo) == "invalid_variable_error"
    assert needle in excinfo.value.message


def test_tools_are_ignored_outside_schema_mode() -> None:
    score = score_tool_calls([oa("get_weather", PARIS)], [flat("get_weather", PARIS)], tools="garbage")
    assert score.reward == 1.0


@pytest.mark.parametrize(
    ("parameters", "needle"),
    [
        ({"type": "objekt"}, "not a valid JSON Schema"),
        (
            {"type": "object", "properties": {"city": {"type": "string", "pattern": "("}}},
            "not a valid JSON Schema",
        ),
        ({"type": "object", "required": "city"}, "not a valid JSON Schema"),
        ("object", "not a JSON Schema"),
        ({"type": "object", "minProperties": float("nan")}, "not JSON"),
        ({"$ref": "https://example.com/weather.json"}, "only local references"),
        ({"$defs": {"c": {"$dynamicRef": "other.json#c"}}}, "only local references"),
        ({"$ref": "#/$defs/missing"}, "parameters schema failed"),
    ],
)
def test_invalid_schema_is_other_error(parameters: Any, needle: str) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": parameters}}]
    with pytest.raises(GradingError) as excinfo:
        score_tool_calls([oa("get_weather", PARIS)], [flat("get_weather")], arguments="schema", tools=tools)
    assert flag_of(excinfo) == "other_error"
    assert needle in excinfo.value.message


def test_local_refs_are_supported() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/city"}},
        "$defs": {"city": {"type": "string", "minLength": 2}},
    }
    tools = [{"name": "get_weather", "parameters": schema}]
    ok = score_tool_calls([oa("get_weather", PARIS)], [flat("get_weather")], arguments="schema", tools=tools)
    bad = score_tool_calls([oa("get_weather", {"city": "P"})], [flat("get_weather")], arguments="schema", tools=tools)
    assert (ok.reward, bad.reward) == (1.0, 0.0)
    assert "$.city" in bad.details[0]


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="arguments must be one of"):
        score_tool_calls([], [], arguments="fuzzy")  # type: ignore[arg-type]


def test_deeply_nested_arguments_are_a_grading_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(GradingError) as excinfo:
        score_tool_calls([oa("f", '{"a": ' + deep + "}")], [flat("f", {})])
    assert flag_of(excinfo) == "sample_parse_error"


# --- property: never anything but a score or a GradingError --------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
# Plausible values (small pools, so that calls often match) mixed with arbitrary JSON.
small_values = st.recursive(
    st.sampled_from([None, True, 1, 1.0, 0, "Paris", "C"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(["city", "n"]), inner, max_size=2),
    max_leaves=4,
)
good_names = st.sampled_from(["get_weather", "get_time", "f"])
names = good_names | st.text(max_size=4) | json_scalars
good_args = st.dictionaries(st.sampled_from(["city", "units", "days", "n"]), small_values, max_size=3)
arg_dicts = good_args | st.dictionaries(st.text(max_size=3), json_values, max_size=3)
arg_payloads = (
    arg_dicts
    | arg_dicts.map(json.dumps)
    | json_values.map(json.dumps)
    | st.sampled_from(["", "{", "{}", "[]", "null", '{"n": NaN}'])
    | json_values
)


good_payloads = good_args | good_args.map(json.dumps)
good_calls = st.lists(st.builds(flat, good_names, good_payloads) | st.builds(oa, good_names, good_payloads), max_size=4)
wild_calls = st.lists(
    st.fixed_dictionaries({"name": names}, optional={"arguments": arg_payloads})
    | st.builds(
        lambda name, args: {"type": "function", "function": {"name": name, "arguments": args}},
        names,
        arg_payloads,
    )
    | json_values,
    max_size=4,
)
call_inputs = st.one_of(good_calls, good_calls, wild_calls, json_values)
expected_inputs = st.one_of(good_calls, good_calls.map(json.dumps), wild_calls, json_values)
# Expected calls drawn from the actual ones, so that many calls match.
related_inputs = good_calls.flatmap(
    lambda calls: st.tuples(st.just(calls), st.lists(st.sampled_from(calls), max_size=4) if calls else st.just([]))
)
call_pairs = st.one_of(st.tuples(call_inputs, expected_inputs), related_inputs, related_inputs)
good_schemas = st.sampled_from([WEATHER_SCHEMA, TIME_SCHEMA, {"type": "object"}, True, False])
schemas = good_schemas | st.sampled_from([{"type": "objekt"}, {"$ref": "#/nowhere"}, {"$ref": "http://x.invalid"}])
tool_defs = st.builds(
    lambda name, params: {"type": "function", "function": {"name": name, "parameters": params}},
    names,
    schemas | json_values,
) | st.fixed_dictionaries({"name": names}, optional={"parameters": schemas | json_values})
good_tools = st.lists(
    st.builds(lambda name, params: {"name": name, "parameters": params}, good_names, good_schemas),
    max_size=3,
    unique_by=lambda tool: tool["name"],
)
tool_inputs = st.one_of(good_tools, good_tools, st.none(), st.lists(tool_defs | json_values, max_size=3), json_values)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pair=call_pairs,
    mode=st.sampled_from(["exact", "subset", "schema"]),
    ordered=st.booleans(),
    tools=tool_inputs,
)
def test_never_raises_anything_but_grading_error(pair: tuple[Any, Any], mode: str, ordered: bool, tools: Any) -> None:
    actual, expected = pair
    try:
        score = score_tool_calls(actual, expected, arguments=mode, ordered=ordered, tools=tools)  # type: ignore[arg-type]
    except GradingError as exc:
        assert exc.flag in ERROR_FLAGS
        assert exc.message
        return
    assert isinstance(score, ToolCallScore)
    assert 0.0 <= score.reward <= 1.0
    assert 0 <= score.matched <= min(score.expected, score.actual)
    assert len(score.details) == score.expected
    assert all("\n" not in line for line in score.details)


@settings(max_examples=150, deadline=None)
@given(
    calls=st.lists(
        st.builds(flat, st.sampled_from(["f", "g"]), st.dictionaries(st.sampled_from("ab"), st.integers(0, 2))),
        max_size=5,
    ),
    data=st.data(),
)
def test_unordered_score_ignores_order_and_is_perfect_on_itself(calls: list[dict[str, Any]], data: Any) -> None:
    shuffled = data.draw(st.permutations(calls))
    assert score_tool_calls(shuffled, calls).reward == 1.0
    assert score_tool_calls(calls, calls, ordered=True).reward == 1.0
    subset = data.draw(st.lists(st.sampled_from(calls), max_size=len(calls), unique_by=id)) if calls else []
    assert score_tool_calls(shuffled, subset).matched == len(subset)


def test_each_actual_call_is_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = tool_calls._Judge._schema_problem

    def counting(self: Any, call: Any) -> str | None:
        calls.append(call.name)
        return original(self, call)

    monkeypatch.setattr(tool_calls._Judge, "_schema_problem", counting)
    actual = [oa("get_weather", PARIS), oa("get_weather", {"city": 1}), oa("get_time", {"tz": "UTC"})]
    expected = [
        flat("get_weather"),
        flat("get_weather", PARIS_C),
        flat("get_weather", PARIS),
        flat("get_time"),
    ]
    score = score_tool_calls(actual, expected, arguments="schema", tools=TOOLS)
    assert score.matched == 2
    assert sorted(calls) == ["get_time", "get_weather", "get_weather"]


def test_tool_calls_that_are_not_a_list_flag_only_their_sample() -> None:
    grader = {"type": "string_check", "name": "s", "input": "{{ sample.output_text }}", "reference": "a"}
    grader["operation"] = "eq"
    bad = [{"role": "assistant", "content": "a", "tool_calls": 5}]
    result = run_batch(grader, [bad, "a"], [{}, {}])
    assert result.rewards == [0.0, 1.0]
    assert result.error_flags(0) == ["sample_parse_error"]
