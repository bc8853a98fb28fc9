"""`invoke_local`: run a built Lambda zip's handler as Lambda would, before deploying it.

The zip is unpacked to a temporary task root and its handler runs in a fresh interpreter started with `-S -s`
and a new environment: `sys.path` holds the task root and the standard library only (no site-packages, no
user site, no `PYTHON*` variables of the caller), so a module missing from the bundle fails here exactly as it
would in Lambda. The environment has Lambda's variables and none of the caller's (no AWS credentials); the
handler gets a Lambda-like context whose remaining time counts down from `timeout`.

A bundle built for another Python (the default target is 3.12) or machine still runs: its compiled
distributions would not import here, so it runs as a copy with those reinstalled, at the same versions, for
this interpreter (`build.retarget_zip`; every other file as built). The copy is cached under
`cache_dir()/lambda-local`, keyed by the zip's SHA-256 and the target, and `log` gets one line saying so. A
bundle without compiled distributions runs as built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .build import (
    HANDLER,
    MANIFEST,
    BuildError,
    cache_dir,
    compiled_in_zip,
    file_sha256,
    local_arch,
    retarget_zip,
)

__all__ = ["INIT_ALLOWANCE", "LocalInvokeError", "invoke_local", "lambda_environment"]

#: Seconds allowed for the cold start (imports, grader validation) on top of the function timeout.
INIT_ALLOWANCE = 30.0
ACCOUNT = "123456789012"

# Runs inside the fresh interpreter: argv = event file, result file, timeout seconds, memory MB, request id, ARN.
_RUNNER = r"""
import importlib, json, os, sys, time, traceback

event_path, result_path, timeout, memory, request_id, function_arn = sys.argv[1:]


class LambdaContext:
    def __init__(self, deadline_ms):
        self._deadline_ms = deadline_ms
        name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_name = name
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = int(memory)
        self.aws_request_id = request_id
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = None
        self.tenant_id = None

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


def error(error_type, e):
    return {"ok": False, "errorType": error_type, "errorMessage": str(e),
            "stackTrace": traceback.format_exception(type(e), e, e.__traceback__)}


def main():
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        e = type(e)(f"Unable to import module '{module_name}': {e}")
        return error("Runtime.ImportModuleError", e)
    except Exception as e:
        return error("Runtime.UserCodeError" if not isinstance(e, SyntaxError) else "Runtime.UserCodeSyntaxError", e)
    handler = getattr(module, function_name, None)
    if handler is None:
        missing = AttributeError(f"Handler '{function_name}' missing on module '{module_name}'")
        return error("Runtime.HandlerNotFound", missing)
    with open(event_path, encoding="utf-8") as f:
        event = json.load(f)
    context = LambdaContext((time.time() + float(timeout)) * 1000)
    try:
        result = handler(event, context)
    except Exception as e:
        return error(type(e).__name__, e)
    try:
        return {"ok": True, "result": json.loads(json.dumps(result))}
    except (TypeError, ValueError) as e:
        return error("Runtime.MarshalError", e)


outcome = main()
with open(result_path, "w", encoding="utf-8") as f:
    json.dump(outcome, f)
"""


class LocalInvokeError(RuntimeError):
    """The handler failed, as Lambda would report it: `error_type`, `error_message`, `stack_trace` and `logs`."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        error_message: str | None = None,
        stack_trace: list[str] | None = None,
        logs: str = "",
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.error_message = message if error_message is None else error_message
        self.stack_trace = stack_trace or []
        self.logs = logs


def lambda_environment(
    task_root: str | os.PathLike[str],
    *,
    handler: str = HANDLER,
    function_name: str = "gradekit-local",
    memory: int = 1024,
    timeout: float = 60,
    region: str = "us-east-1",
    python: str | None = None,
) -> dict[str, str]:
    """The variables Lambda sets for a function (and nothing from the caller's environment)."""
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PYTHONPATH": str(task_root),
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(task_root),
        "_HANDLER": handler,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{python}",
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(timeout)),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2025/01/01/[$LATEST]local",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }


def _interpreter_version(python: str) -> str:
    if python == sys.executable:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    out = subprocess.run(
        [python, "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def invoke_local(
    zip_path: str | os.PathLike[str],
    event: Any,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    python: str | None = None,
    handler: str | None = None,
    function_name: str = "gradekit-local",
    memory: int = 1024,
    region: str = "us-east-1",
    log_sink: TextIO | None = None,
    rebuild: bool = True,
    log: Callable[[str], None] | None = None,
) -> Any:
    """The handler's JSON output for `event`, run from the unpacked zip in a fresh, isolated interpreter.

    `python` is the interpreter (default: this one). A bundle built for another Python version or machine
    runs as a copy with its compiled distributions reinstalled for it (see the module; `log` gets one line
    saying so), or, with `rebuild=False`, is refused. `env` adds to the Lambda variables and the bundle's own
    (`GRADEKIT_GRADER`); the handler's logs go to `log_sink`. Raises `LocalInvokeError` if the bundle cannot
    run here, or the handler cannot be imported, raises, times out or returns non-JSON.
    """
    interpreter = python or sys.executable
    version = _interpreter_version(interpreter)
    zip_path = _for_this_python(Path(zip_path), interpreter, version, rebuild, log or (lambda _line: None))
    with zipfile.ZipFile(zip_path) as zf:
        manifest = json.loads(zf.read(MANIFEST)) if MANIFEST in zf.namelist() else {}
        with tempfile.TemporaryDirectory(prefix="gradekit-invoke-") as tmp:
            task = Path(tmp) / "task"
            scratch = Path(tmp) / "tmp"
            scratch.mkdir()
            zf.extractall(task)
            variables = lambda_environment(
                task,
                handler=handler or manifest.get("handler", HANDLER),
                function_name=function_name,
                memory=memory,
                timeout=timeout,
                region=region,
                python=version,
            )
            variables |= {"TMPDIR": str(scratch), "HOME": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
            variables |= manifest.get("environment", {})
            variables |= env or {}
            context = [
                str(timeout),
                str(memory),
                str(uuid.uuid4()),
                f"arn:aws:lambda:{region}:{ACCOUNT}:function:{function_name}",
            ]
            return _run(interpreter, task, Path(tmp), event, variables, context, timeout, log_sink)


def _for_this_python(zip_path: Path, interpreter: str, version: str, rebuild: bool, log: Callable[[str], None]) -> Path:
    """The zip to run with `interpreter`: the bundle itself, or its copy for this Python and machine."""
    with zipfile.ZipFile(zip_path) as zf:
        manifest = json.loads(zf.read(MANIFEST)) if MANIFEST in zf.namelist() else {}
    arch = local_arch()
    wanted_python, wanted_arch = manifest.get("python"), manifest.get("arch")
    if (not wanted_python or wanted_python == version) and (not wanted_arch or arch is None or wanted_arch == arch):
        return zip_path
    built = f"{zip_path} is built for Python {wanted_python} {wanted_arch}"
    here = f"Python {version} {arch or ''}".rstrip()
    compiled = compiled_in_zip(zip_path)
    if not compiled:
        log(f"{built}, this is {here}: it holds no compiled distributions, so it runs as built")
        return zip_path
    names = ", ".join(compiled)
    advice = (
        f"rebuild it with `gradekit lambda build --python {version}` (build_zip(python={version!r})), or run it "
        f"with a Python {wanted_python} interpreter: `gradekit lambda invoke --python {wanted_python}` "
        "(invoke_local(python=...))"
    )
    if not rebuild or arch is None:
        raise LocalInvokeError(
            f"{built} but {interpreter} is {here}: its compiled distributions ({names}) would not import; {advice}",
            error_type="Runtime.InterpreterMismatch",
        )
    copy = cache_dir() / "lambda-local" / f"{file_sha256(zip_path)[:24]}-python{version}-{arch}.zip"
    if copy.is_file():
        log(f"{built}, this is {here}: running its copy for {here} built earlier ({copy})")
        return copy
    try:
        retarget_zip(zip_path, copy, python=version, arch=arch)
    except BuildError as e:
        raise LocalInvokeError(
            f"{built} but {interpreter} is {here}, and reinstalling its compiled distributions ({names}) for "
            f"{here} failed ({str(e).strip().splitlines()[-1].strip()}); {advice}",
            error_type="Runtime.InterpreterMismatch",
        ) from None
    log(f"{built}, this is {here}: running a copy with {names} reinstalled for {here} ({copy})")
    return copy


def _run(
    interpreter: str,
    task: Path,
    tmp: Path,
    event: Any,
    variables: dict[str, str],
    context: list[str],
    timeout: float,
    log_sink: TextIO | None,
) -> Any:
    event_path, result_path = tmp / "event.json", tmp / "result.json"
    event_path.write_text(json.dumps(event), encoding="utf-8")
    command = [interpreter, "-S", "-s", "-c", _RUNNER, str(event_path), str(result_path), *context]
    try:
        proc = subprocess.run(
            command,
            cwd=task,
            env=variables,
            capture_output=True,
            text=True,
            timeout=timeout + INIT_ALLOWANCE,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise LocalInvokeError(
            f"Task timed out after {timeout + INIT_ALLOWANCE:.0f} seconds (timeout {timeout:g} s + cold start)",
            error_type="Sandbox.Timedout",
            logs=_text(e.stdout) + _text(e.stderr),
        ) from None
    logs = proc.stdout + proc.stderr
    if log_sink is not None:
        log_sink.write(logs)
    if not result_path.is_file():
        raise LocalInvokeError(
            f"the handler process exited with code {proc.returncode} before returning:\n{logs[-3000:]}",
            error_type="Runtime.ExitError",
            logs=logs,
        )
    outcome = json.loads(result_path.read_text(encoding="utf-8"))
    if not outcome["ok"]:
        raise LocalInvokeError(
            f"{outcome['errorType']}: {outcome['errorMessage']}\n{''.join(outcome['stackTrace'])[-3000:]}",
            error_type=outcome["errorType"],
            error_message=outcome["errorMessage"],
            stack_trace=outcome["stackTrace"],
            logs=logs,
        )
    return outcome["result"]


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""
