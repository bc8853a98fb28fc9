"""Every bound gradekit.graders puts on hostile samples and grader definitions, in one place.

A policy under optimisation writes the samples, and grader JSON arrives over an HTTP API, so each input
that could make grading crash, recurse without end or allocate without limit is bounded here.  Past a
bound, a grader definition is a validation error that names the field and the constant; a sample is
that sample's reward 0 with an error flag whose message names the constant.  Nothing here is tunable at
run time: the values are part of gradekit's contract.

| constant | value | bounds | past it |
|---|---|---|---|
| `MAX_JSON_DEPTH` | 200 | nesting of JSON text and of values walked as JSON | see below |
| `MAX_FORMULA_CHARS` | 8,192 | length of `calculate_output` | validation error |
| `MAX_FORMULA_DEPTH` | 64 | nesting of `calculate_output` | validation error |
| `MAX_TEMPLATE_CHARS` | 65,536 | length of one template string | validation error |
| `MAX_RENDERED_CHARS` | 4,000,000 | a rendered template; each string or list a template builds | `other_error` |
| `MAX_TEMPLATE_ALLOCATED_CHARS` | 16,000,000 | all strings and lists one rendering builds | `other_error` |
| `MAX_TEMPLATE_INT_BITS` | 4,096 | integers a template computes (`*`, `**`, `+`) | `other_error` |
| `MAX_TEMPLATE_STEPS` | 100,000 | loop iterations + calls + filter applications; `range` length | `other_error` |
| `MAX_PYTHON_SOURCE_BYTES` | 262,144 | a `python` grader's `source` (OpenAI's 256 kB) | validation error |
| `MAX_MESSAGE_CHARS` | 2,000 | an error message kept in a result | cut |

Past `MAX_JSON_DEPTH`: a model output that is deeper JSON gets `output_json == {}` (a template path
into it is `sample_parse_error`; graders reading `output_text` grade it as usual, and the result notes
it under `metadata.scores["output_json_error"]`); a deeper sample or item value is that sample's
`sample_parse_error` or `invalid_variable_error` where a grader must walk it (rendering it as JSON,
sending it to a `python` grader, comparing tool-call arguments); a deeper grader definition is a
validation error; deeper parts of a result are replaced by a marker string. A template bound hit while
rendering is `other_error` (the flag of every failed sandboxed template); constant expressions past a
bound are found at validation.
"""

from __future__ import annotations

from typing import Final

#: Deepest nesting of JSON arrays/objects parsed from text, or of dicts/lists walked as JSON.
#: pydantic-core refuses to serialise values nested deeper than about 250 levels, and Python's default
#: recursion limit is 1000 frames; 200 keeps every consumer of a result (and the standard library's
#: recursive encoders and decoders) well inside both.
MAX_JSON_DEPTH: Final[int] = 200

#: Longest `calculate_output` formula, in characters. Real formulas are a few hundred characters; this
#: leaves room for dozens of weighted sub-graders while bounding what one sample's evaluation costs
#: (which grows with the formula's length).
MAX_FORMULA_CHARS: Final[int] = 8192

#: Deepest nesting of parentheses, signs, exponents and calls in a formula.
MAX_FORMULA_DEPTH: Final[int] = 64

#: Longest template string, in characters (jinja2 compiles about 50 kB per second).
MAX_TEMPLATE_CHARS: Final[int] = 65_536

#: Longest rendered template, and longest string, list, tuple or dict a template may build while rendering.
MAX_RENDERED_CHARS: Final[int] = 4_000_000

#: Characters (and items) of all the strings and lists one rendering creates, garbage included: bounds
#: memory when a loop keeps what it builds (each value alone is bounded by `MAX_RENDERED_CHARS`).
MAX_TEMPLATE_ALLOCATED_CHARS: Final[int] = 16_000_000

#: Largest integer (in bits) a template may compute: `7 ** 3000000` would take seconds.
MAX_TEMPLATE_INT_BITS: Final[int] = 4096

#: Loop iterations + calls + filter applications of one rendering; also the longest `range`.
MAX_TEMPLATE_STEPS: Final[int] = 100_000

#: Largest `python` grader source, in UTF-8 bytes (OpenAI's limit).
MAX_PYTHON_SOURCE_BYTES: Final[int] = 256 * 1024

#: Longest error message kept per grader in a result (`metadata.scores["error_details"]`).
MAX_MESSAGE_CHARS: Final[int] = 2000
