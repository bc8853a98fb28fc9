"""`gradekit lambda build | invoke | deploy`: the reward Lambda from the command line.

`register(subparsers)` adds the commands to the `gradekit` CLI (found through the `gradekit.commands` entry
point group); each leaf parser sets `func`, which takes the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from gradekit.runtime.cli import CLIError, number_arg, os_error_text
from gradekit.runtime.jsonl import loads

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Adds `lambda build`, `lambda invoke` and `lambda deploy` to the `gradekit` command line."""
    parser = subparsers.add_parser(
        "lambda",
        help="build, test and deploy the AWS Lambda reward function of Amazon Bedrock RFT",
        description="Package a grader as the Bedrock RFT reward Lambda, run it locally or remotely, deploy it.",
    )
    commands = parser.add_subparsers(dest="lambda_command", metavar="COMMAND", required=True)

    build = commands.add_parser(
        "build",
        help="build the deployment zip",
        description="Build a Lambda zip holding gradekit, its dependencies and the grader (never torch).",
    )
    build.add_argument(
        "--grader", required=True, help="a .json/.yaml grader file, path/to/file.py:function, or module:function"
    )
    build.add_argument("--out", default="dist/reward.zip", type=Path, help="the zip to write (default: %(default)s)")
    build.add_argument("--python", default="3.12", help="the Lambda runtime's Python version (default: %(default)s)")
    build.add_argument("--arch", default="x86_64", choices=["x86_64", "arm64"], help="default: %(default)s")
    build.add_argument(
        "--extra", dest="extras", action="append", default=[], metavar="EXTRA", help="a gradekit extra, e.g. similarity"
    )
    build.add_argument(
        "--requirement",
        "-r",
        dest="requirements",
        action="append",
        default=[],
        metavar="REQ",
        help="one more pip requirement",
    )
    build.set_defaults(func=_build)

    invoke = commands.add_parser(
        "invoke",
        help="run the handler on an event, locally from the zip or the deployed function",
        description="Invoke the reward handler with an event (a JSON file, or - for stdin) and print its output.",
    )
    where = invoke.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", metavar="ZIP", type=Path, help="unpack and run this zip in a fresh interpreter")
    where.add_argument("--arn", help="invoke this deployed function (name or ARN, optionally qualified)")
    invoke.add_argument("--event", required=True, help="the event JSON file, or - for stdin")
    invoke.add_argument("--region", help="AWS region (default: from the ARN or the AWS configuration)")
    invoke.add_argument(
        "--timeout", type=number_arg(float, low=1), default=60.0, help="local: the function timeout in seconds"
    )
    invoke.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="local: one more variable")
    invoke.add_argument(
        "--python",
        metavar="VERSION|PATH",
        help="local: the interpreter to run the bundle with, e.g. 3.12 (python3.12 on PATH) or its path (default: "
        "this one; a bundle built for another Python runs as a copy with its compiled dependencies reinstalled)",
    )
    invoke.set_defaults(func=_invoke)

    deploy = commands.add_parser(
        "deploy",
        help="create or update the function, publish a version, print the job's grader JSON",
        description="Deploy the zip as a Lambda function and print the grader JSON for the fine-tuning job.",
    )
    deploy.add_argument("zip", type=Path, help="the zip built by `gradekit lambda build`")
    deploy.add_argument("--name", required=True, help="the function name")
    deploy.add_argument("--role", required=True, help="the ARN of the function's execution role")
    deploy.add_argument("--region", help="AWS region (default: from the AWS configuration)")
    deploy.add_argument("--alias", help="create or move this alias to the new version (and use it in the grader)")
    deploy.add_argument(
        "--memory",
        type=number_arg(int, low=128, high=10240),
        default=1024,
        help="MB, 128 to 10240 (default: %(default)s)",
    )
    deploy.add_argument(
        "--timeout", type=number_arg(int, low=1, high=900), default=900, help="seconds, 1 to 900 (default: %(default)s)"
    )
    deploy.add_argument("--runtime", help="e.g. python3.12 (default: the bundle's)")
    deploy.add_argument("--arch", choices=["x86_64", "arm64"], help="default: the bundle's")
    deploy.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="one more variable")
    deploy.set_defaults(func=_deploy)


def _progress(message: str) -> None:
    print(message, file=sys.stderr)


def _fail(error: Exception) -> NoReturn:
    """Report `error` as the CLI's one error line (`gradekit: error: ...`, exit status 1)."""
    raise CLIError(os_error_text(error) if isinstance(error, OSError) else str(error)) from None


def _variables(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--env takes KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def _build(args: argparse.Namespace) -> int:
    from .build import BuildError, build_zip

    try:
        report = build_zip(
            args.grader,
            args.out,
            python=args.python,
            arch=args.arch,
            extras=args.extras,
            requirements=args.requirements,
            log=_progress,
        )
    except BuildError as e:
        _fail(e)
    print(report.summary())
    return 0


def _read_event(source: str) -> Any:
    """The event JSON from a file or stdin; a ValueError naming the source if it is not JSON (or too deep)."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    try:
        return loads(text)
    except ValueError as e:
        raise ValueError(f"{'stdin' if source == '-' else source}: the event is not JSON: {e}") from None


def _interpreter(python: str | None) -> str | None:
    """`--python` as an interpreter path: a version (3.12) is `python3.12` on PATH."""
    if python is None or not re.fullmatch(r"3\.\d{1,2}", python):
        return python
    found = shutil.which(f"python{python}")
    if found is None:
        raise CLIError(f"--python {python}: no python{python} on PATH; give the interpreter's path")
    return found


def _invoke(args: argparse.Namespace) -> int:
    try:
        event = _read_event(args.event)
        if args.local is not None:
            from .invoke import LocalInvokeError, invoke_local

            try:
                out = invoke_local(
                    args.local,
                    event,
                    env=_variables(args.env),
                    timeout=args.timeout,
                    python=_interpreter(args.python),
                    log_sink=sys.stderr,
                    log=_progress,
                )
            except LocalInvokeError as e:
                _fail(e)
        else:
            from .deploy import DeployError, RemoteInvokeError, invoke_remote

            try:
                out = invoke_remote(args.arn, event, region=args.region)
            except (RemoteInvokeError, DeployError) as e:
                _fail(e)
    except (OSError, ValueError) as e:
        _fail(e)
    print(json.dumps(out, indent=2))
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from .deploy import DeployError, deploy

    try:
        result = deploy(
            args.zip,
            name=args.name,
            role=args.role,
            region=args.region,
            runtime=args.runtime,
            arch=args.arch,
            memory=args.memory,
            timeout=args.timeout,
            env=_variables(args.env),
            alias=args.alias,
            log=_progress,
        )
    except (DeployError, OSError, ValueError) as e:
        _fail(e)
    qualifier = f"alias {result.alias} -> version {result.version}" if result.alias else f"version {result.version}"
    print(f"function {result.function_arn} ({'created' if result.created else 'updated'}, {qualifier})")
    print("grader for the fine-tuning job:")
    print(result.grader_json())
    return 0
