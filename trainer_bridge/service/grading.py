"""The grader of a job: any gradekit grader JSON, or a Lambda ARN mapped to a local grader or to the deployed Lambda.

`{"type": "lambda", "lambda": {"function": ARN}}` (the Bedrock OpenAI-compatible form) and Bedrock's native
`{"lambdaGrader": {"lambdaArn": ARN}}` name a reward Lambda. The service's config maps an ARN to a grader that
runs here (`lambda_graders`), or, with `lambda_backend`, grades through the deployed function with the
`lambda` backend of the `gradekit.backends` entry point group (boto3 `invoke`, Bedrock's event contract).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gradekit.graders import Grader, GraderValidationError, validate, validate_untrusted
from gradekit.runtime.engine import Backend, load_backend

from .config import ServiceConfig

__all__ = ["GraderProblem", "lambda_arn", "normalise_grader", "resolve_grader"]


class GraderProblem(ValueError):
    """The job's grader cannot be used; `param` names the field, `problems` lists what is wrong."""

    def __init__(self, problems: list[str], param: str) -> None:
        self.problems, self.param = problems, param
        super().__init__("; ".join(problems))


def normalise_grader(spec: Any) -> dict[str, Any]:
    """The grader as the job object shows it; Bedrock's native `lambdaGrader` becomes the `lambda` form."""
    if isinstance(spec, Mapping) and "type" not in spec and isinstance(spec.get("lambdaGrader"), Mapping):
        return {"type": "lambda", "lambda": {"function": spec["lambdaGrader"].get("lambdaArn")}}
    if not isinstance(spec, Mapping):
        raise GraderProblem(["the grader must be a JSON object"], "method.reinforcement.grader")
    return dict(spec)


def lambda_arn(spec: Mapping[str, Any]) -> str | None:
    """The function ARN of a `lambda` grader, or None for other graders."""
    if spec.get("type") != "lambda":
        return None
    target = spec.get("lambda")
    function = target.get("function") if isinstance(target, Mapping) else None
    if not isinstance(function, str) or not function:
        raise GraderProblem(
            ["a lambda grader needs lambda.function, the reward function's ARN"],
            "method.reinforcement.grader.lambda.function",
        )
    return function


def _placeholder(arn: str) -> Grader:
    """The grader object a Lambda backend reports under: named after the function, never run here."""
    name = arn.rsplit(":function:", 1)[-1].split(":")[0] or "lambda"
    return validate({"type": "python", "name": name, "source": "def grade(sample, item):\n    return 0.0\n"})


def resolve_grader(
    spec: Mapping[str, Any], config: ServiceConfig, *, build_backend: bool = True
) -> tuple[Grader, Backend | None]:
    """The grader that scores the job's samples, and the backend that runs it (None: in the worker).

    `build_backend=False` only checks that a deployed Lambda can be used (the API does that at job creation).
    """
    arn = lambda_arn(spec)
    if arn is None:
        try:
            return validate_untrusted(spec), None
        except GraderValidationError as e:
            field = next((p.field for p in e.details if p.field), ())
            raise GraderProblem(e.problems, ".".join(["method.reinforcement.grader", *map(str, field)])) from None
    if arn in config.lambda_graders:
        try:
            return validate(config.lambda_graders[arn]), None
        except GraderValidationError as e:
            raise GraderProblem(
                [f"the grader mapped to {arn} in the service config is invalid: {p}" for p in e.problems],
                "method.reinforcement.grader.lambda.function",
            ) from None
    if config.lambda_backend:
        grader = _placeholder(arn)
        if not build_backend:
            return grader, None
        try:
            return grader, load_backend(f"lambda:{arn}", grader)
        except ValueError as e:
            raise GraderProblem([str(e)], "method.reinforcement.grader.lambda.function") from None
    raise GraderProblem(
        [
            f"unknown Lambda function {arn}: map it to a grader under lambda_graders in the service config, "
            "or set lambda_backend to invoke the deployed function"
        ],
        "method.reinforcement.grader.lambda.function",
    )
