"""Deploying with real boto3: create, update, publish, alias and waiters against a moto server on 127.0.0.1;
`invoke_remote` against a small Lambda Invoke API served here that runs the built bundle with `invoke_local`
(moto's own invoke needs Docker)."""

from __future__ import annotations

import base64
import json
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from moto.server import ThreadedMotoServer

from gradekit.lambda_handlers import deploy as deploy_module
from gradekit.lambda_handlers.build import HANDLER, BuildReport
from gradekit.lambda_handlers.deploy import DeployError, RemoteInvokeError, deploy, invoke_remote
from gradekit.lambda_handlers.invoke import LocalInvokeError, invoke_local

from .bundles import REGION, JsonPostServer, bedrock_event, built_bundle, gradekit_cli, handler_output

ACCOUNT = "123456789012"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
#: Most requests the Invoke API answers in one test module.
MAX_INVOKES = 10


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server on 127.0.0.1 (any free port), stopped after the module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


pytestmark = pytest.mark.usefixtures("fake_aws")


def client(service: str, url: str) -> Any:
    """A boto3 client of `service` talking to `url`."""
    return boto3.client(service, endpoint_url=url, region_name=REGION)


def make_role(url: str, name: str) -> str:
    """A Lambda execution role created in moto's IAM; its ARN."""
    return client("iam", url).create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]


@pytest.fixture(scope="module")
def role(moto_url: str) -> str:
    """The execution role of the tests' functions."""
    return make_role(moto_url, "gradekit-reward")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """The default-target bundle (python3.12, x86_64)."""
    return built_bundle("default", tmp_path_factory)[1]


def arn(name: str, qualifier: str | None = None) -> str:
    """The function's ARN in moto's account."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}" + (f":{qualifier}" if qualifier else "")


# --- deploy (moto) -------------------------------------------------------------------------------------------


def test_deploy_creates_updates_publishes_and_aliases(moto_url: str, role: str, bundle: BuildReport) -> None:
    lam = client("lambda", moto_url)
    steps: list[str] = []
    first = deploy(bundle.path, name="reward", role=role, client=lam, log=steps.append)
    assert (first.function_arn, first.version, first.qualified_arn) == (arn("reward"), "1", arn("reward", "1"))
    assert first.created and first.alias is None
    assert first.grader == {"type": "lambda", "lambda": {"function": arn("reward", "1")}}
    assert steps == ["creating function reward (python3.12, x86_64)", "publishing a version"]
    config = lam.get_function_configuration(FunctionName="reward")
    assert (config["State"], config["LastUpdateStatus"]) == ("Active", "Successful")
    assert (config["Handler"], config["Runtime"], config["Architectures"]) == (HANDLER, "python3.12", ["x86_64"])
    assert (config["MemorySize"], config["Timeout"], config["Role"]) == (1024, 900, role)
    assert config["Environment"]["Variables"] == {"GRADEKIT_GRADER": "grader.json"}
    assert config["CodeSha256"] == first.code_sha256

    second = deploy(bundle.path, name="reward", role=role, client=lam, alias="live", memory=2048, env={"A": "1"})
    assert (second.created, second.version, second.alias) == (False, "2", "live")
    assert second.qualified_arn == arn("reward", "live")
    assert second.grader_json() == (
        '{"type": "lambda", "lambda": {"function": "arn:aws:lambda:us-east-1:123456789012:function:reward:live"}}'
    )
    config = lam.get_function_configuration(FunctionName="reward")
    assert (config["MemorySize"], config["Environment"]["Variables"]) == (
        2048,
        {"GRADEKIT_GRADER": "grader.json", "A": "1"},
    )
    assert lam.get_alias(FunctionName="reward", Name="live")["FunctionVersion"] == "2"

    third = deploy(bundle.path, name="reward", role=role, client=lam, alias="live", timeout=300)
    assert (third.version, third.qualified_arn) == ("3", arn("reward", "live"))
    assert lam.get_alias(FunctionName="reward", Name="live")["FunctionVersion"] == "3"
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName="reward")["Versions"]] == [
        "$LATEST",
        "1",
        "2",
        "3",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"memory": 64}, "memory must be 128 to 10240 MB, got 64"),
        ({"timeout": 901}, "timeout must be 1 to 900 seconds"),
    ],
)
def test_deploy_checks_settings_first(bundle: BuildReport, options: dict[str, Any], message: str) -> None:
    with pytest.raises(DeployError, match=message):
        deploy(bundle.path, name="x", role="arn:aws:iam::123456789012:role/x", client=object(), **options)


def test_deploy_waits_for_a_new_role_then_gives_up_clearly(
    moto_url: str, bundle: BuildReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    lam = client("lambda", moto_url)
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/created-late"
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        # IAM "propagates" the role while deploy waits
        sleeps.append(seconds)
        make_role(moto_url, "created-late")

    clock = types.SimpleNamespace(monotonic=deploy_module.time.monotonic, sleep=sleep)
    monkeypatch.setattr(deploy_module, "time", clock)
    result = deploy(bundle.path, name="late-role", role=role_arn, client=lam)
    assert (result.created, result.version, sleeps) == (True, "1", [2.0])

    monkeypatch.setattr(deploy_module, "ROLE_PROPAGATION_WAIT", 0.0)
    with pytest.raises(DeployError, match=r"deploying no-role failed: .*cannot be assumed by Lambda"):
        deploy(bundle.path, name="no-role", role=f"arn:aws:iam::{ACCOUNT}:role/missing", client=lam)


def test_cli_deploy_prints_the_grader_json(
    moto_url: str, role: str, bundle: BuildReport, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", moto_url)
    argv = ["lambda", "deploy", str(bundle.path), "--name", "cli-reward", "--role", role, "--region", REGION]
    assert gradekit_cli(*argv, "--alias", "prod", "--memory", "512", "--timeout", "120", "--env", "K=v") == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"function {arn('cli-reward')} (created, alias prod -> version 1)",
        "grader for the fine-tuning job:",
        '{"type": "lambda", "lambda": {"function": "arn:aws:lambda:us-east-1:123456789012:function:cli-reward:prod"}}',
    ]
    config = client("lambda", moto_url).get_function_configuration(FunctionName="cli-reward")
    assert (config["MemorySize"], config["Timeout"], config["Environment"]["Variables"]["K"]) == (512, 120, "v")

    assert gradekit_cli(*argv, "--memory", "1") == 2  # refused by the option's check, before anything is sent
    assert capsys.readouterr().err == (
        "gradekit: error: argument --memory: 1 is not between 128 and 10240; see 'gradekit lambda deploy --help'\n"
    )


# --- invoke_remote (a Lambda Invoke API running the bundle locally) --------------------------------------------


class InvokeAPI(JsonPostServer):
    """`POST /2015-03-31/functions/{name}/invocations` on 127.0.0.1, running known functions with invoke_local."""

    def __init__(self, functions: dict[str, Path]) -> None:
        self.functions = functions
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._start_server()

    def invoke(self, name: str, event: Any) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers of one invocation, as Lambda answers them."""
        with self._lock:
            self.calls.append(name)
            count = len(self.calls)
        if count > MAX_INVOKES:
            return 429, b'{"message": "Rate exceeded"}', {"x-amzn-ErrorType": "TooManyRequestsException"}
        zip_path = self.functions.get(name)
        if zip_path is None:
            body = json.dumps({"Type": "User", "Message": f"Function not found: {name}"}).encode()
            return 404, body, {"x-amzn-ErrorType": "ResourceNotFoundException"}
        try:
            return 200, json.dumps(invoke_local(zip_path, event, timeout=60)).encode(), {}
        except LocalInvokeError as e:
            failure = {"errorType": e.error_type, "errorMessage": e.error_message, "stackTrace": e.stack_trace}
            log_tail = base64.b64encode(e.logs[-4096:].encode()).decode()
            return (
                200,
                json.dumps(failure).encode(),
                {"X-Amz-Function-Error": "Unhandled", "X-Amz-Log-Result": log_tail},
            )

    def respond(self, path: str, payload: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Route `POST /2015-03-31/functions/{name}/invocations` to `invoke`."""
        parts = path.split("?")[0].strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["2015-03-31", "functions"] or parts[3] != "invocations":
            return 404, b"{}", {"x-amzn-ErrorType": "UnknownOperationException"}
        return self.invoke(unquote(parts[2]), json.loads(payload or b"null"))


LIVE = arn("reward", "live")


@pytest.fixture(scope="module")
def invoke_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InvokeAPI]:
    """The Invoke API serving `reward:live`: the security-review bundle built for this Python."""
    report = built_bundle("security311", tmp_path_factory)[1]
    with InvokeAPI({LIVE: report.path}) as api:
        yield api


def test_invoke_remote(invoke_api: InvokeAPI) -> None:
    out = invoke_remote(LIVE, bedrock_event(), client=client("lambda", invoke_api.url))
    assert out == handler_output(bedrock_event())
    assert [o["aggregate_reward_score"] for o in out][::2] == [1.0, 0.0]


def test_invoke_remote_raises_on_a_function_error(invoke_api: InvokeAPI) -> None:
    with pytest.raises(RemoteInvokeError) as caught:
        invoke_remote(LIVE, {"hello": "world"}, client=client("lambda", invoke_api.url))
    error = caught.value
    assert error.error_type == "EventError"
    assert str(error).startswith(f"{LIVE} failed (Unhandled): EventError: expected the Bedrock RFT event")
    assert "log tail:" in str(error) and "expected the Bedrock RFT event" in error.logs


def test_invoke_remote_unknown_function(invoke_api: InvokeAPI) -> None:
    with pytest.raises(RemoteInvokeError, match="Function not found") as caught:
        invoke_remote(arn("nope"), [], client=client("lambda", invoke_api.url))
    assert caught.value.error_type == "ResourceNotFoundException"


def test_cli_invoke_arn(
    invoke_api: InvokeAPI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", invoke_api.url)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(bedrock_event()))
    assert gradekit_cli("lambda", "invoke", "--arn", LIVE, "--event", str(event)) == 0
    assert json.loads(capsys.readouterr().out) == handler_output(bedrock_event())
    event.write_text('{"hello": "world"}')
    assert gradekit_cli("lambda", "invoke", "--arn", LIVE, "--event", str(event)) == 1
    assert capsys.readouterr().err.startswith(f"gradekit: error: {LIVE} failed (Unhandled): EventError:")
