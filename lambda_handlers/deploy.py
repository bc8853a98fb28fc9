"""`deploy` a built zip as the reward Lambda (create or update, publish, alias) and `invoke_remote` it, with boto3.

`deploy` returns the `grader` to put in the fine-tuning job: `{"type": "lambda", "lambda": {"function": ARN}}`
with the ARN qualified by the alias, else by the published version, so training always calls the code that was
tested. boto3 is imported on first use (it is not a gradekit dependency; Lambda's runtime ships it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build import HANDLER, ZIPPED_LIMIT, read_manifest

__all__ = ["DeployError", "DeployResult", "RemoteInvokeError", "deploy", "invoke_remote", "lambda_client"]

#: Seconds to keep retrying while IAM has not yet propagated a newly created role to Lambda.
ROLE_PROPAGATION_WAIT = 60.0
_ROLE_NOT_READY = "cannot be assumed by Lambda"


class DeployError(RuntimeError):
    """The function could not be deployed; the message says which step failed and why."""


class RemoteInvokeError(RuntimeError):
    """The deployed function failed: `error_type`, the message and the tail of its log."""

    def __init__(self, message: str, *, error_type: str, logs: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.logs = logs


@dataclass(frozen=True, slots=True)
class DeployResult:
    """The deployed function: its ARN, the published version, the alias and the grader for the job."""

    function_name: str
    function_arn: str
    version: str
    qualified_arn: str
    code_sha256: str
    created: bool
    alias: str | None = None

    @property
    def grader(self) -> dict[str, Any]:
        """The `grader` of the fine-tuning job (Bedrock's OpenAI-compatible API)."""
        return {"type": "lambda", "lambda": {"function": self.qualified_arn}}

    def grader_json(self) -> str:
        """`grader` as the exact JSON to paste into the fine-tuning job."""
        return json.dumps(self.grader)


def lambda_client(region: str | None = None) -> Any:
    """A boto3 Lambda client (honours `AWS_ENDPOINT_URL_LAMBDA` and the usual AWS settings)."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise DeployError("deploying and invoking need boto3: pip install boto3") from None
    try:
        return boto3.client("lambda", region_name=region)
    except BotoCoreError as e:
        raise DeployError(f"cannot make a Lambda client: {e} (pass --region or set AWS_REGION)") from None


def _code_sha256(code: bytes) -> str:
    return base64.b64encode(hashlib.sha256(code).digest()).decode()


def deploy(
    zip_path: str | os.PathLike[str],
    *,
    name: str,
    role: str,
    region: str | None = None,
    runtime: str | None = None,
    arch: str | None = None,
    memory: int = 1024,
    timeout: int = 900,
    env: dict[str, str] | None = None,
    alias: str | None = None,
    description: str = "gradekit reward function for Bedrock RFT",
    client: Any = None,
    log: Callable[[str], None] | None = None,
) -> DeployResult:
    """Creates or updates function `name` from the zip, waits until it is ready, publishes a version, sets `alias`.

    `runtime` and `arch` default to the bundle's (from its manifest), else python3.12 and x86_64; `env` adds to
    the bundle's variables (`GRADEKIT_GRADER`).
    """
    say = log or (lambda _message: None)
    if not 128 <= memory <= 10240:
        raise DeployError(f"memory must be 128 to 10240 MB, got {memory}")
    if not 1 <= timeout <= 900:
        raise DeployError(f"timeout must be 1 to 900 seconds (Lambda's maximum), got {timeout}")
    code = Path(zip_path).read_bytes()
    if len(code) > ZIPPED_LIMIT:
        raise DeployError(f"{zip_path} is {len(code) / 2**20:.1f} MB, over Lambda's 50 MB limit for a direct upload")
    manifest = read_manifest(zip_path)
    runtime = runtime or manifest.get("runtime", "python3.12")
    arch = arch or manifest.get("arch", "x86_64")
    lam = client if client is not None else lambda_client(region)
    from botocore.exceptions import BotoCoreError, ClientError

    config: dict[str, Any] = {
        "Role": role,
        "Handler": manifest.get("handler", HANDLER),
        "Runtime": runtime,
        "MemorySize": memory,
        "Timeout": timeout,
        "Description": description,
        "Environment": {"Variables": {**manifest.get("environment", {}), **(env or {})}},
    }
    try:
        try:
            lam.get_function_configuration(FunctionName=name)
            exists = True
        except lam.exceptions.ResourceNotFoundException:
            exists = False
        if not exists:
            say(f"creating function {name} ({runtime}, {arch})")
            _create(lam, name, code, arch, config)
            lam.get_waiter("function_active_v2").wait(FunctionName=name)
        else:
            # an update still in progress (another deploy) would make this one fail with a conflict
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
            say(f"updating the code of function {name}")
            lam.update_function_code(FunctionName=name, ZipFile=code, Architectures=[arch])
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
            say(f"updating the configuration of function {name}")
            lam.update_function_configuration(FunctionName=name, **config)
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        sha = _code_sha256(code)
        say("publishing a version")
        published = lam.publish_version(FunctionName=name, CodeSha256=sha, Description=description)
        version = str(published["Version"])
        function_arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
        qualified = f"{function_arn}:{version}"
        if alias:
            say(f"pointing alias {alias} at version {version}")
            qualified = _set_alias(lam, name, alias, version)
    except (ClientError, BotoCoreError) as e:
        raise DeployError(f"deploying {name} failed: {e}") from e
    return DeployResult(name, function_arn, version, qualified, sha, not exists, alias)


def _create(lam: Any, name: str, code: bytes, arch: str, config: dict[str, Any]) -> None:
    deadline = time.monotonic() + ROLE_PROPAGATION_WAIT
    delay = 2.0
    while True:
        try:
            lam.create_function(
                FunctionName=name, Code={"ZipFile": code}, PackageType="Zip", Architectures=[arch], **config
            )
            return
        except lam.exceptions.InvalidParameterValueException as e:
            # a role created seconds ago is not yet visible to Lambda: IAM is eventually consistent
            if _ROLE_NOT_READY not in str(e) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def _set_alias(lam: Any, name: str, alias: str, version: str) -> str:
    try:
        lam.get_alias(FunctionName=name, Name=alias)
    except lam.exceptions.ResourceNotFoundException:
        return str(lam.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)["AliasArn"])
    return str(lam.update_alias(FunctionName=name, Name=alias, FunctionVersion=version)["AliasArn"])


def invoke_remote(arn: str, event: Any, *, client: Any = None, region: str | None = None) -> Any:
    """The deployed function's JSON output for `event` (a synchronous invoke); `RemoteInvokeError` if it failed."""
    if client is None:
        parts = arn.split(":")
        region = region or (parts[3] if arn.startswith("arn:") and len(parts) > 3 else None)
        client = lambda_client(region)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.invoke(
            FunctionName=arn, InvocationType="RequestResponse", LogType="Tail", Payload=json.dumps(event).encode()
        )
        body = response["Payload"].read()
    except (ClientError, BotoCoreError) as e:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__)
        raise RemoteInvokeError(f"invoking {arn} failed: {e}", error_type=str(code)) from e
    logs = base64.b64decode(response["LogResult"]).decode("utf-8", "replace") if response.get("LogResult") else ""
    if response.get("FunctionError"):
        try:
            failure = json.loads(body)
        except ValueError:
            failure = {"errorMessage": body.decode("utf-8", "replace")}
        error_type = failure.get("errorType", response["FunctionError"])
        message = f"{arn} failed ({response['FunctionError']}): {error_type}: {failure.get('errorMessage', '')}"
        raise RemoteInvokeError(message + (f"\nlog tail:\n{logs}" if logs else ""), error_type=error_type, logs=logs)
    try:
        return json.loads(body)
    except ValueError:
        raise RemoteInvokeError(f"{arn} returned a payload that is not JSON: {body[:200]!r}", error_type="") from None
