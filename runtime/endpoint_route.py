"""`POST /score`: the server's grader (`gradekit serve --grader G`) answering as a Microsoft Foundry `endpoint` grader.

The contract (`gradekit.graders.models.ENDPOINT_CONTRACT`,
https://github.com/microsoft-foundry/fine-tuning/blob/main/Demos/Agentic_RFT_PrivatePreview/README.md, "Endpoint
Graders"): the service POSTs `{"sample": {...}, "item": {...}, "trace_id": "trace_..."}` to the grader's `url` and
reads `{"score": float}`. Here G grades `sample` against `item` and the answer is `{"score": <G's reward>}`.

- Path: the contract POSTs to the `url` as given, so any path would do; `/score` says what it does and leaves `/`
  to the dashboard. A service is given `"url": "https://HOST/score"`.
- Auth: `gradekit serve --api-key K` requires `Authorization: Bearer K` here as everywhere: the grader's
  `headers` carry it (the contract's only auth is a key in the headers).
- Sample: read as gradekit reads a sample dict (`make_sample`: `output_text`, or a chat completion's `choices`);
  one with only `output_json` (as the demo's own test payload) gets `output_text` = that JSON's text.
  `trace_id` is optional (the demo's manual test sends none) and only logged.
- A sample G fails through its own fault scores 0, as OpenAI's graders do. A sample G gives no reward (see
  `BatchResult.no_reward`) has no score to answer: a grading failure (a sandbox or a judge down) is a 503 with
  the reasons, a grader that does not apply (returned None) a 422 `not_applicable`. The contract retries a
  failed call at most 3 times and then discards the rollout, so neither is ever trained on as a 0.
- Bad bodies are 400s naming the field (`sample`/`item` not objects, `trace_id` not a string, a `sample` that
  is no sample); no server grader is a 400 `grader_not_configured`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from gradekit.graders import BatchResult, Env, Grader, GradingError, make_sample

from .engine import grade_rows
from .jsonl import dumps

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["SCORE_PATH", "ScoreRequest", "ScoreResponse", "register"]

logger = logging.getLogger(__name__)

SCORE_PATH = "/score"


class ScoreRequest(BaseModel):
    """The body the contract POSTs; keys it may add later are ignored."""

    model_config = ConfigDict(extra="ignore")

    sample: dict[str, Any]
    item: dict[str, Any] = Field(default_factory=dict)
    trace_id: str | None = None


class ScoreResponse(BaseModel):
    """The contract's answer."""

    score: float


def contract_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """`sample` as gradekit reads it; a `GradingError` when it is no sample (see the module docstring)."""
    if "output_text" not in sample and "choices" not in sample and "output_json" in sample:
        sample = {**sample, "output_text": dumps(sample["output_json"])}
    return make_sample(sample)


def _grade(grader: Grader, sample: dict[str, Any], item: dict[str, Any], env: Env | None) -> BatchResult:
    return asyncio.run(grade_rows(grader, [sample], [item], env=env))


def register(app: FastAPI) -> None:
    """Add `POST /score`, grading with `app.state.grader` in a worker thread."""
    from .server import APIError

    @app.post(SCORE_PATH, responses={200: {"model": ScoreResponse}})
    async def endpoint_score(body: ScoreRequest) -> dict[str, float]:
        """Grade one sample as a Foundry `endpoint` grader: `{"sample", "item", "trace_id"}` in, `{"score"}` out."""
        grader: Grader | None = getattr(app.state, "grader", None)
        if grader is None:
            raise APIError(
                400,
                "No grader is configured for the endpoint-grader route: start the server with "
                "`gradekit serve --grader GRADER` (or create_app(grader=...)).",
                code="grader_not_configured",
            )
        try:
            sample = contract_sample(body.sample)
        except GradingError as e:
            raise APIError(400, f"Invalid 'sample': {e.message}.", param="sample") from None
        env = getattr(app.state, "env", None)
        result = await anyio.to_thread.run_sync(lambda: _grade(grader, sample, body.item, env))
        unrewarded = result.no_reward(0)
        if unrewarded == "grading_error":
            reasons = result[0].metadata.scores.get("error_details", {})
            why = "; ".join(f"{g}: {d['flag']}: {d['message']}" for g, d in reasons.items())
            logger.warning("trace_id %s: no reward: %s", body.trace_id, why)
            raise APIError(503, f"The sample could not be graded (retry later): {why}", type="server_error")
        if unrewarded == "not_applicable":
            message = f"Grader {grader.name!r} does not apply to this sample (it gave no reward), so there is no score."
            raise APIError(422, message, code="not_applicable")
        return {"score": result.rewards[0]}
