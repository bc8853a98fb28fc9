"""Lambda zips: what goes in (and never: torch), sizes against Lambda's limits, determinism, local invocation.

The bundles are built once per session by `built_bundle` (also used by test_runtime_api and test_deploy):
`default` for the default target (python 3.12, x86_64), `security311` for this interpreter (Python 3.11) so
that its compiled wheels import here and `invoke_local` can run it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from gradekit.graders import load_grader
from gradekit.lambda_handlers import build as build_module
from gradekit.lambda_handlers import invoke as invoke_module
from gradekit.lambda_handlers.build import (
    HANDLER,
    MANIFEST,
    BuildError,
    BuildReport,
    build_zip,
    grader_source,
    read_manifest,
)
from gradekit.lambda_handlers.invoke import LocalInvokeError, invoke_local

from .bundles import (
    ANSWER_GRADER,
    BEDROCK_EVENT,
    FIXED_TIME,
    LOCAL_PYTHON,
    ROOT,
    SECURITY_GRADER,
    bedrock_event,
    built_bundle,
    expected_rewards,
    gradekit_cli,
    handler_output,
    without,
)


@pytest.fixture(scope="session")
def default_bundle(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """The default-target bundle of a string_check JSON grader."""
    return built_bundle("default", tmp_path_factory)[1]


@pytest.fixture(scope="session")
def security_bundle(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """The bundle of examples/security_review/grader.json, built for this interpreter's Python."""
    return built_bundle("security311", tmp_path_factory)[1]


# --- where the grader comes from ---------------------------------------------------------------------------


def test_grader_source_forms(tmp_path: Path) -> None:
    (tmp_path / "g.yml").write_text("type: string_check\n")
    assert grader_source(str(tmp_path / "g.yml")).env_value == "grader.yaml"
    json_source = grader_source(str(SECURITY_GRADER))
    assert (json_source.env_value, json_source.files) == ("grader.json", ((SECURITY_GRADER, "grader.json"),))
    assert json_source.grader_file == SECURITY_GRADER

    (tmp_path / "single.py").write_text("")
    single = grader_source(f"{tmp_path}/single.py:score")
    assert (single.env_value, [name for _, name in single.files]) == ("single:score", ["single.py"])

    package = tmp_path / "pkg" / "sub"
    package.mkdir(parents=True)
    for f in ("pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/rules.py", "pkg/helpers.py"):
        (tmp_path / f).write_text("")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "helpers.cpython-311.pyc").write_bytes(b"")
    nested = grader_source(f"{tmp_path}/pkg/sub/rules.py:score")
    assert nested.env_value == "pkg.sub.rules:score"
    assert [name for _, name in nested.files] == [
        "pkg/__init__.py",
        "pkg/helpers.py",
        "pkg/sub/__init__.py",
        "pkg/sub/rules.py",
    ]
    assert grader_source(f"{tmp_path}/pkg:score").env_value == "pkg:score"

    by_module = grader_source("tests.sample_graders:exact_answer")
    assert by_module.env_value == "tests.sample_graders:exact_answer"
    assert {"tests/__init__.py", "tests/sample_graders.py"} <= {name for _, name in by_module.files}
    assert grader_source("gradekit.graders.models:StringCheck").files == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.json", "does not exist"),
        ("no_colon", "expected a .json/.yaml file"),
        ("no_such_module_xyz:f", "no module 'no_such_module_xyz'"),
        ("{dir}:f", "without __init__.py, not a package"),
    ],
)
def test_grader_source_errors(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        grader_source(spec.format(dir=tmp_path))


def test_invalid_grader_fails_before_pip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"type": "string_check", "name": "x", "input": "a", "reference": "b", "operation": "eq?"})
    )
    with pytest.raises(BuildError, match=r"(?s)bad.json is not valid: .*string_check.operation: Input should be"):
        build_zip(str(bad), tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


# --- never torch ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", ["embeddings", "dev"])
def test_torch_extras_are_refused(tmp_path: Path, extra: str) -> None:
    with pytest.raises(BuildError, match=f"the '{extra}' extra never goes into a Lambda bundle"):
        build_zip(str(SECURITY_GRADER), tmp_path / "out.zip", extras=[extra])


def test_an_unknown_extra_is_refused(tmp_path: Path) -> None:
    grader = tmp_path / "answer.json"
    grader.write_text(json.dumps(ANSWER_GRADER))
    with pytest.raises(BuildError, match=r"gradekit has no extra 'similarty' \(it has: .*similarity"):
        build_zip(str(grader), tmp_path / "out.zip", extras=["similarty"])


def _fake_wheel(directory: Path, name: str, version: str, requires: list[str]) -> None:
    dist = f"{name.replace('-', '_')}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(directory / f"{dist}-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{dist}.dist-info/METADATA", metadata)
        zf.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}.dist-info/RECORD", "")


#: The stand-in torch's version, pinned exactly: under any cap a pip configuration may put on torch (a site-wide
#: constraints file saying torch<=2.14.1 made a stand-in 99.0 unresolvable, so pip failed before the torch
#: check), and a post-release of 0.0.0 that no real index carries.
STAND_IN_TORCH = "0.0.0.post20260101"


def test_a_requirement_pulling_torch_fails_before_anything_is_installed(tmp_path: Path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    # local stand-ins, so that resolving never touches the real torch
    _fake_wheel(links, "reward-helpers", "1.0", ["similarity-models>=1"])
    _fake_wheel(links, "similarity-models", "1.0", [f"torch=={STAND_IN_TORCH}"])
    _fake_wheel(links, "torch", STAND_IN_TORCH, [])
    grader = tmp_path / "answer.json"
    grader.write_text(json.dumps(ANSWER_GRADER))
    with pytest.raises(BuildError) as caught:
        build_zip(str(grader), tmp_path / "out.zip", requirements=["reward-helpers==1.0"], find_links=[links])
    assert "the requirements pull torch (reward-helpers -> similarity-models -> torch)" in str(caught.value)
    assert "GRADEKIT_EMBEDDINGS_MODEL" in str(caught.value)
    assert not (tmp_path / "out.zip").exists()


# --- the default bundle --------------------------------------------------------------------------------------


def test_default_bundle_contents(default_bundle: BuildReport) -> None:
    report = default_bundle
    with zipfile.ZipFile(report.path) as zf:
        names = zf.namelist()
        infos = zf.infolist()
        assert json.loads(zf.read("grader.json")) == ANSWER_GRADER
        manifest = json.loads(zf.read(MANIFEST))
        records = {n: zf.read(n).decode() for n in names if n.endswith(".dist-info/RECORD")}
        contents = {n: zf.read(n) for n in names}
    assert names == sorted(names)
    assert all(i.date_time == FIXED_TIME for i in infos)
    assert {i.external_attr >> 16 for i in infos} <= {0o100644, 0o100755}
    assert manifest["handler"] == HANDLER == "gradekit.lambda_handlers.entry.handler"
    assert manifest["environment"] == {"GRADEKIT_GRADER": "grader.json"}
    assert (manifest["runtime"], manifest["arch"], manifest["extras"]) == ("python3.12", "x86_64", [])
    assert read_manifest(report.path) == manifest
    assert "gradekit/lambda_handlers/entry.py" in names
    assert any(n.startswith("aws_lambda_powertools/") for n in names)
    assert any(n.startswith("pydantic_core/_pydantic_core.cpython-312-x86_64-linux-gnu") for n in names)
    assert not any(n.startswith(("torch/", "torch-", "sentence_transformers/", "rapidfuzz/", "numpy/")) for n in names)
    assert not any(n.endswith((".pyc", ".pyi")) or "__pycache__" in n or n.startswith("bin/") for n in names)
    assert not any("/tests/" in n or n.endswith(("direct_url.json", "/INSTALLER")) for n in names)
    # every RECORD lists exactly files that are in the zip, with their true hashes
    for record_name, text in records.items():
        rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0] != record_name]
        assert rows
        for path, digest, size in rows:
            data = contents[path]
            expected = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (expected, len(data))
    assert (report.python, report.arch, report.runtime, report.extras) == ("3.12", "x86_64", "python3.12", ())
    assert report.files == len(names)
    assert report.zipped == report.path.stat().st_size
    assert report.unzipped == sum(i.file_size for i in infos) < build_module.UNZIPPED_LIMIT
    assert report.zipped < 20 * 2**20 and report.within_limits
    assert report.sha256 == hashlib.sha256(report.path.read_bytes()).hexdigest()
    by_name = {d.name: d for d in report.distributions}
    assert {"gradekit", "pydantic_core", "openai", "aws_lambda_powertools"} <= set(by_name)
    assert sum(d.unzipped for d in report.distributions) == report.unzipped
    summary = report.summary()
    assert f"{report.files} files" in summary
    assert "zipped (limit 50.0 MB)" in summary and "unzipped (limit 250.0 MB)" in summary
    assert "handler gradekit.lambda_handlers.entry.handler, GRADEKIT_GRADER=grader.json" in summary


def test_same_inputs_same_bytes_and_the_limit_check(
    default_bundle: BuildReport, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = built_bundle("default", tmp_path_factory)
    grader = default_bundle.path.parent / "answer.json"
    monkeypatch.setattr(build_module, "ZIPPED_LIMIT", 2**20)
    out = tmp_path_factory.mktemp("again") / "reward.zip"
    with pytest.raises(BuildError, match="over Lambda's limits") as caught:
        build_zip(str(grader), out, project=project)
    again = caught.value.report
    assert again is not None and not again.within_limits
    # rebuilt from the same source: byte for byte the same zip
    assert (again.sha256, again.zipped, again.files) == (
        default_bundle.sha256,
        default_bundle.zipped,
        default_bundle.files,
    )
    assert "(limit 1.0 MB)" in str(caught.value)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_arm64_bundle_for_another_python(tmp_path: Path) -> None:
    grader = tmp_path / "answer.yaml"
    grader.write_text(
        "type: string_check\nname: answer\noperation: eq\n"
        "input: '{{ sample.output_text }}'\nreference: '{{ item.answer }}'\n"
    )
    report = build_zip(str(grader), tmp_path / "arm.zip", python="3.13", arch="arm64")
    with zipfile.ZipFile(report.path) as zf:
        names = zf.namelist()
        assert zf.read("grader.yaml") == grader.read_bytes()
    assert any(n.startswith("pydantic_core/_pydantic_core.cpython-313-aarch64-linux-gnu") for n in names)
    assert not any("x86_64" in n for n in names if n.endswith(".so"))
    manifest = read_manifest(report.path)
    assert (manifest["runtime"], manifest["arch"], manifest["environment"]) == (
        "python3.13",
        "arm64",
        {"GRADEKIT_GRADER": "grader.yaml"},
    )
    assert report.summary().splitlines()[1].startswith("runtime python3.13 arm64, handler")


# --- the similarity bundle, run locally -----------------------------------------------------------------------


def test_similarity_bundle(security_bundle: BuildReport) -> None:
    report = security_bundle
    assert report.extras == ("similarity",)
    assert "added the similarity extra: the grader uses text_similarity rouge_l" in report.notes
    [extra_note] = [n for n in report.notes if n.startswith("the similarity extra adds ")]
    for library in ("RapidFuzz", "sacrebleu", "rouge_score", "nltk", "wn", "numpy"):
        assert library in extra_note.partition(": ")[2].split(", ")
    with zipfile.ZipFile(report.path) as zf:
        names = set(zf.namelist())
    assert {"rouge_score/rouge_scorer.py", "wn/data/wordnet-3.0/data.noun", "nltk/__init__.py"} <= names
    assert not any(n.startswith(("wn/data/wordnet_ic/", "wn/data/wordnet-3.3/", "torch/")) for n in names)
    sizes = {d.name.lower(): d for d in report.distributions}
    assert {"rapidfuzz", "sacrebleu", "rouge_score", "nltk", "wn", "numpy"} <= set(sizes)
    assert report.within_limits


def test_invoke_local_gives_the_rewards_of_run_batch(security_bundle: BuildReport) -> None:
    event = bedrock_event()
    logs = io.StringIO()
    out = invoke_local(security_bundle.path, event, log_sink=logs)
    rewards = expected_rewards(SECURITY_GRADER, event)
    assert [o["aggregate_reward_score"] for o in out] == rewards
    assert out == handler_output(event)
    assert rewards[0] == 1.0 and rewards[2] == 0.0 and rewards[3] == 1.0
    assert rewards[1] == pytest.approx(0.7 + 0.3 * 12 / 17)  # rouge_l F1 of the half-right explanation
    assert [o["id"] for o in out] == ["sample-q000", "sample-q001", "sample-q004", "sample-q005"]
    assert out[1]["metrics_list"][1] == {"name": "explanation", "value": pytest.approx(12 / 17), "type": "Reward"}
    assert {"name": "invalid_variable_error", "value": 1.0, "type": "Metric"} in out[2]["metrics_list"]
    emf = next(json.loads(line) for line in logs.getvalue().splitlines() if '"_aws"' in line)
    assert emf["samples"] == [4.0]


def test_a_file_missing_from_the_bundle_fails_with_the_import_error(
    security_bundle: BuildReport, tmp_path: Path
) -> None:
    broken = without(
        security_bundle.path, tmp_path / "broken.zip", lambda n: n.startswith("pydantic_core/_pydantic_core")
    )
    with pytest.raises(LocalInvokeError) as caught:
        invoke_local(broken, bedrock_event())
    assert caught.value.error_type == "Runtime.ImportModuleError"
    assert (
        "Unable to import module 'gradekit.lambda_handlers.entry': No module named 'pydantic_core._pydantic_core'"
        in (str(caught.value))
    )


# --- local invocation: isolation and failures (tiny hand-made bundles) ---------------------------------------

PROBE = """
import json, os, sys, time


def handler(event, context):
    try:
        import pytest  # in the test environment's site-packages: must not be importable here
        importable = True
    except ImportError:
        importable = False
    return {
        "event": event,
        "env": dict(os.environ),
        "path": sys.path,
        "cwd": os.getcwd(),
        "site_packages_importable": importable,
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 60_000,
        },
    }


def fails(event, context):
    raise ValueError("bad sample " + event["x"])


def not_json(event, context):
    return {1, 2}


def slow(event, context):
    time.sleep(30)
"""


@pytest.fixture
def probe_zip(tmp_path: Path) -> Path:
    """A bundle of one module with handlers that report their surroundings or fail."""
    path = tmp_path / "probe.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("probe.py", PROBE)
        zf.writestr("broken.py", "import module_that_is_not_in_the_bundle\n")
    return path


def test_invoke_local_isolates_the_bundle(probe_zip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPARENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "parent-secret")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    out = invoke_local(
        probe_zip, {"x": "1"}, handler="probe.handler", env={"EXTRA": "yes"}, function_name="reward", memory=2048
    )
    env, task = out["env"], out["cwd"]
    assert out["event"] == {"x": "1"}
    assert out["site_packages_importable"] is False
    assert not any("site-packages" in p for p in out["path"])
    assert out["path"][1] == task and env["LAMBDA_TASK_ROOT"] == task and env["PYTHONPATH"] == task
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
    assert not [k for k in env if k.startswith(("GRADEKIT_", "VIRTUAL_ENV", "PYTEST"))]
    assert env["_HANDLER"] == "probe.handler" and env["EXTRA"] == "yes"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "reward" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "2048"
    assert env["AWS_REGION"] == "us-east-1" and env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "60"
    assert env["AWS_EXECUTION_ENV"] == f"AWS_Lambda_python{LOCAL_PYTHON}"
    context = out["context"]
    assert context["function_name"] == "reward" and context["memory_limit_in_mb"] == 2048
    assert context["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:reward"
    assert len(context["aws_request_id"]) == 36 and context["remaining_ok"] is True
    assert not Path(task).exists()  # unpacked to a temporary directory, removed afterwards


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        ("probe.fails", "ValueError", "ValueError: bad sample 1"),
        ("probe.not_json", "Runtime.MarshalError", "Runtime.MarshalError: Object of type set is not JSON serializable"),
        ("probe.missing", "Runtime.HandlerNotFound", "Handler 'missing' missing on module 'probe'"),
        (
            "broken.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'broken': No module named 'module_that_is_not_in_the_bundle'",
        ),
    ],
)
def test_invoke_local_reports_failures_as_lambda_does(
    probe_zip: Path, handler: str, error_type: str, message: str
) -> None:
    with pytest.raises(LocalInvokeError) as caught:
        invoke_local(probe_zip, {"x": "1"}, handler=handler)
    assert caught.value.error_type == error_type
    assert message in str(caught.value)


def test_invoke_local_timeout(probe_zip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invoke_module, "INIT_ALLOWANCE", 0.0)
    with pytest.raises(LocalInvokeError, match="Task timed out after 1 seconds") as caught:
        invoke_local(probe_zip, {}, handler="probe.slow", timeout=1)
    assert caught.value.error_type == "Sandbox.Timedout"


# --- the command line ----------------------------------------------------------------------------------------


SCORING = """
from gradekit.graders import Multi, PythonGrader, grader

from .limits import MAX_WORDS


@grader
def concise(sample, item) -> float:
    words = len(sample["output_text"].split())
    return 1.0 if words <= MAX_WORDS else MAX_WORDS / words


cites_policy = PythonGrader(
    name="cites_policy", source="def grade(sample, item):\\n    return float('Policy' in sample['output_text'])\\n"
)
reward = Multi(
    name="reward",
    graders={"concise": concise, "cites_policy": cites_policy},
    calculate_output="0.5 * concise + 0.5 * cites_policy",
)
"""


def test_cli_builds_and_invokes_a_grader_from_a_python_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "src" / "reward_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "limits.py").write_text("MAX_WORDS = 10\n")
    (package / "scoring.py").write_text(SCORING)
    out = tmp_path / "dist" / "reward.zip"

    spec = f"{package}/scoring.py:reward"  # a multi grader of a function grader and a python grader
    assert gradekit_cli("lambda", "build", "--grader", spec, "--out", str(out), "--python", LOCAL_PYTHON) == 0
    printed = capsys.readouterr()
    assert f"{out}: " in printed.out and "zipped (limit 50.0 MB)" in printed.out
    assert "GRADEKIT_GRADER=reward_pkg.scoring:reward" in printed.out
    assert f"resolving for python{LOCAL_PYTHON} on x86_64" in printed.err
    with zipfile.ZipFile(out) as zf:
        assert {"reward_pkg/__init__.py", "reward_pkg/limits.py", "reward_pkg/scoring.py"} <= set(zf.namelist())
        assert not any(n.startswith(("rapidfuzz/", "numpy/")) for n in zf.namelist())

    assert gradekit_cli("lambda", "invoke", "--local", str(out), "--event", str(BEDROCK_EVENT)) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out)
    monkeypatch.syspath_prepend(str(package.parent))
    rewards = expected_rewards(load_grader("reward_pkg.scoring:reward"), bedrock_event())
    assert [r["aggregate_reward_score"] for r in result] == rewards
    # answers of 14, 10, 2 and 12 words; the third cites no policy
    assert rewards == pytest.approx([(10 / 14 + 1) / 2, 1.0, 0.5, (10 / 12 + 1) / 2])
    assert result[0]["metrics_list"] == [
        {"name": "concise", "value": 10 / 14, "type": "Reward"},
        {"name": "cites_policy", "value": 1.0, "type": "Reward"},
    ]
    assert '"message":"batch graded"' in printed.err  # the handler's logs


def test_cli_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gradekit_cli("lambda", "build", "--grader", "nope.json", "--out", str(tmp_path / "x.zip")) == 1
    assert capsys.readouterr().err == "gradekit: error: grader file nope.json does not exist\n"
    event = tmp_path / "event.json"
    event.write_text("[]")
    assert gradekit_cli("lambda", "invoke", "--local", str(tmp_path / "missing.zip"), "--event", str(event)) == 1
    assert "missing.zip" in capsys.readouterr().err
    assert gradekit_cli("lambda", "invoke", "--event", str(event)) == 2  # --local or --arn is required
    assert capsys.readouterr().err == (
        "gradekit: error: one of the arguments --local --arn is required; see 'gradekit lambda invoke --help'\n"
    )
