"""gradekit's extension of the fine-tuning API for what OpenAI's API has no endpoint for: a job's eval runs.

```
GET /v1/gradekit/fine_tuning/jobs/{id}/eval_runs                      one summary per validation step, in order
GET /v1/gradekit/fine_tuning/jobs/{id}/eval_runs/{step} ?limit&after  that step's samples (prompt, item, the
                                                                      model's sample, reward, sub-rewards, flags,
                                                                      why it got no reward)
```

An eval run is the `evals/step-N.jsonl` file `RFTJob` writes at each validation step; each of its lines is
answered as it is, with an `id` (`evalrow_<step>_<index>_<sample_index>`) to page by. The jobs are those of the
jobs API (the service's and `--runs` folders'); the dashboard's eval-run pages read these endpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query, Request

from gradekit.runtime.server import APIError

from ..loop.evals import eval_run_path, eval_steps, read_eval_run
from .jobs import MAX_LIMIT, page
from .runs import JobSource

__all__ = ["EVAL_RUNS_PATH", "register"]

EVAL_RUNS_PATH = "/v1/gradekit/fine_tuning/jobs/{fine_tuning_job_id}/eval_runs"


def _flagged(line: dict[str, Any]) -> dict[str, str]:
    """The graders of an eval-run line that set an error flag, with the flag."""
    return {grader: flag for grader, flag in (line.get("errors") or {}).items() if flag}


def summary(step: int, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """One eval run in brief: sample count, reward mean (over the samples that got a reward), samples with an
    error, samples without a reward (docs/no-reward.md), and error counts per grader."""
    errors: dict[str, dict[str, int]] = {}
    for line in lines:
        for grader, flag in _flagged(line).items():
            counts = errors.setdefault(grader, {})
            counts[flag] = counts.get(flag, 0) + 1
    rewards = [float(line["reward"]) for line in lines if not line.get("no_reward")]
    return {
        "object": "gradekit.eval_run",
        "step": step,
        "samples": len(lines),
        "reward_mean": sum(rewards) / len(rewards) if rewards else None,
        "samples_with_errors": sum(1 for line in lines if _flagged(line)),
        "samples_without_reward": sum(1 for line in lines if line.get("no_reward")),
        "errors": errors,
    }


def register(app: FastAPI, jobs: Callable[[Request], JobSource]) -> None:
    """Add the eval-run endpoints; `jobs(request)` gives the job source of the jobs API (404s included)."""

    @app.get(EVAL_RUNS_PATH)
    def list_eval_runs(request: Request, fine_tuning_job_id: str) -> dict[str, Any]:
        """The job's eval runs (one per validation step so far), oldest step first."""
        folder = jobs(request).run_dir(fine_tuning_job_id) / "evals"
        steps = eval_steps(folder) if folder.is_dir() else []
        data = [summary(step, read_eval_run(eval_run_path(folder, step))) for step in steps]
        return {"object": "list", "data": data, "has_more": False}

    @app.get(EVAL_RUNS_PATH + "/{step}")
    def eval_run(
        request: Request,
        fine_tuning_job_id: str,
        step: int,
        limit: int = Query(1000, ge=1, le=MAX_LIMIT),
        after: str | None = None,
    ) -> dict[str, Any]:
        """The samples of the job's eval run at `step`, in validation-file order."""
        path = eval_run_path(jobs(request).run_dir(fine_tuning_job_id) / "evals", step)
        if not path.is_file():
            message = f"Job {fine_tuning_job_id} has no eval run at step {step}."
            raise APIError(404, message, param="step", code="eval_run_not_found")
        lines = [
            {"object": "gradekit.eval_run.sample", "id": f"evalrow_{step}_{line['index']}_{line['sample_index']}"}
            | line
            for line in read_eval_run(path)
        ]
        return page(lines, limit, after)
