"""A bundle built for another Python (the default target, 3.12) runs locally as the README's flow says.

`gradekit lambda build` (default `--python 3.12`) then `gradekit lambda invoke --local` on this Python 3.11:
the invoke runs a copy of the bundle whose compiled distributions are reinstalled for this interpreter, says so
in one line, and caches the copy. The copy also runs under AWS's runtime interface client (awslambdaric), as
in test_runtime_api. A bundle without compiled distributions runs as built.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from gradekit.lambda_handlers.build import (
    MANIFEST,
    BuildReport,
    Retarget,
    compiled_distributions,
    compiled_in_zip,
    read_manifest,
    retarget_zip,
)
from gradekit.lambda_handlers.invoke import LocalInvokeError, invoke_local

from .bundles import ANSWER_GRADER, LOCAL_PYTHON, built_bundle, expected_rewards, gradekit_cli
from .test_runtime_api import RuntimeAPI, run_client, runtime_dir  # noqa: F401 (runtime_dir is a fixture)

#: The distributions of the default bundle that are not pure Python (names as their metadata spells them).
COMPILED = ["jiter", "MarkupSafe", "pydantic_core", "PyYAML", "rpds-py"]
ANSWERS = {
    "a1": ("42", "The answer is 42."),
    "a2": ("7", "The answer is 8."),
    "a3": ("Paris", "The answer is Paris, of course."),
}


def event() -> list[dict[str, Any]]:
    """A Bedrock RFT event for the answer grader: two right answers and a wrong one."""
    return [
        {
            "id": sample_id,
            "messages": [
                {"role": "user", "content": "What is the answer?"},
                {"role": "assistant", "content": answer},
            ],
            "metadata": {"reference_answer": reference},
        }
        for sample_id, (reference, answer) in ANSWERS.items()
    ]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """The default-target bundle (python 3.12, x86_64) of the answer grader, as `gradekit lambda build` makes it."""
    return built_bundle("default", tmp_path_factory)[1]


@pytest.fixture(scope="module")
def copy(bundle: BuildReport, tmp_path_factory: pytest.TempPathFactory) -> Retarget:
    """The bundle retargeted to this Python, once for the module."""
    out = tmp_path_factory.mktemp("retarget") / "copy.zip"
    return retarget_zip(bundle.path, out, python=LOCAL_PYTHON, arch="x86_64")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty gradekit cache, so the copy is made in the test."""
    monkeypatch.setenv("GRADEKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_documented_flow_runs_on_this_python(
    bundle: BuildReport, copy: Retarget, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (bundle.python, LOCAL_PYTHON) == ("3.12", f"{sys.version_info.major}.{sys.version_info.minor}")
    assert LOCAL_PYTHON != "3.12", "this test is about a bundle for another Python"
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event()))
    rewards = expected_rewards(ANSWER_GRADER, event())
    assert rewards == [1.0, 0.0, 1.0]

    assert gradekit_cli("lambda", "invoke", "--local", str(bundle.path), "--event", str(path)) == 0
    out, err = capsys.readouterr()
    assert [(o["id"], o["aggregate_reward_score"]) for o in json.loads(out)] == list(zip(ANSWERS, rewards, strict=True))
    [cached] = (cache / "lambda-local").iterdir()
    assert cached.name == f"{bundle.sha256[:24]}-python{LOCAL_PYTHON}-x86_64.zip"
    assert cached.read_bytes() == copy.path.read_bytes()  # the same bundle retargeted twice: the same bytes
    notes = [line for line in err.splitlines() if not line.startswith("{")]  # the others are the handler's logs
    assert notes == [
        f"{bundle.path} is built for Python 3.12 x86_64, this is Python {LOCAL_PYTHON} x86_64: running a copy with "
        f"{', '.join(COMPILED)} reinstalled for Python {LOCAL_PYTHON} x86_64 ({cached})"
    ]
    assert "Traceback" not in err

    # the second time, the cached copy runs: one line says which
    assert gradekit_cli("lambda", "invoke", "--local", str(bundle.path), "--event", str(path)) == 0
    out, err = capsys.readouterr()
    assert [o["aggregate_reward_score"] for o in json.loads(out)] == rewards
    assert [line for line in err.splitlines() if not line.startswith("{")] == [
        f"{bundle.path} is built for Python 3.12 x86_64, this is Python {LOCAL_PYTHON} x86_64: running its copy "
        f"for Python {LOCAL_PYTHON} x86_64 built earlier ({cached})"
    ]


def test_the_copy_keeps_every_pure_file(bundle: BuildReport, copy: Retarget, tmp_path: Path) -> None:
    assert (copy.python, copy.arch, copy.reinstalled) == (LOCAL_PYTHON, "x86_64", tuple(COMPILED))
    tag = f"cpython-{LOCAL_PYTHON.replace('.', '')}"
    with zipfile.ZipFile(bundle.path) as a, zipfile.ZipFile(copy.path) as b:
        old, new = set(a.namelist()), set(b.namelist())
        records = [
            n
            for n in old
            if n.endswith(".dist-info/RECORD")
            and n.split("-")[0] in {"jiter", "markupsafe", "pydantic_core", "pyyaml", "rpds_py"}
        ]
        assert len(records) == len(COMPILED)
        compiled = {line.split(",")[0] for r in records for line in a.read(r).decode().splitlines()}
        pure = old - compiled - {MANIFEST}
        assert len(pure) > 1000 and "gradekit/graders/__init__.py" in pure and "grader.json" in pure
        assert pure <= new
        assert [n for n in pure if a.read(n) != b.read(n)] == []  # byte for byte, RECORDs of pure ones too
        assert "pydantic_core/_pydantic_core.cpython-312-x86_64-linux-gnu.so" in old
        assert f"pydantic_core/_pydantic_core.{tag}-x86_64-linux-gnu.so" in new
        assert [n for n in new if "cpython-312" in n] == []
    manifest = read_manifest(copy.path)
    assert (manifest["python"], manifest["runtime"], manifest["arch"]) == (
        LOCAL_PYTHON,
        f"python{LOCAL_PYTHON}",
        "x86_64",
    )
    assert manifest["retargeted_from"] == {"python": "3.12", "arch": "x86_64", "sha256": bundle.sha256}
    assert manifest["environment"] == read_manifest(bundle.path)["environment"]
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(copy.path) as zf:
        zf.extractall(unpacked)
    # every RECORD lists exactly files that are there (the installer's records, trimmed as build_zip trims them)
    for record in unpacked.glob("*.dist-info/RECORD"):
        for line in record.read_text().splitlines():
            assert (unpacked / line.split(",")[0]).is_file(), (record, line)
    assert [name.lower() for name, _ in compiled_distributions(unpacked)] == [
        "jiter",
        "markupsafe",
        "pydantic_core",
        "pyyaml",
        "rpds-py",
    ]


def test_the_copy_under_awslambdaric(
    copy: Retarget,
    runtime_dir: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    task = tmp_path / "task"
    with zipfile.ZipFile(copy.path) as zf:
        zf.extractall(task)
    with RuntimeAPI([event()]) as api:
        run_client(api, task, runtime_dir, tmp_path / "client.log")
    logs = (tmp_path / "client.log").read_text()
    assert api.init_errors == [] and api.errors == {}, logs
    [answer] = api.responses.values()
    assert [(o["id"], o["aggregate_reward_score"]) for o in answer] == [("a1", 1.0), ("a2", 0.0), ("a3", 1.0)]


def test_without_rebuilding_the_mismatch_is_refused_with_what_to_do(bundle: BuildReport) -> None:
    with pytest.raises(LocalInvokeError) as caught:
        invoke_local(bundle.path, event(), rebuild=False)
    assert caught.value.error_type == "Runtime.InterpreterMismatch"
    message = str(caught.value)
    assert message.startswith(
        f"{bundle.path} is built for Python 3.12 x86_64 but {sys.executable} is Python {LOCAL_PYTHON} x86_64: its "
        f"compiled distributions ({', '.join(COMPILED)}) would not import"
    )
    # the advice names options the command line has
    assert f"`gradekit lambda build --python {LOCAL_PYTHON}`" in message
    assert "`gradekit lambda invoke --python 3.12`" in message


def test_a_pure_bundle_for_another_python_runs_as_built(tmp_path: Path) -> None:
    path = tmp_path / "pure.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("echo.py", "import sys\n\ndef handler(event, context):\n    return [event, sys.version_info[:2]]\n")
        zf.writestr("tiny-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(MANIFEST, json.dumps({"python": "3.12", "arch": "x86_64", "handler": "echo.handler"}))
    assert compiled_in_zip(path) == []
    said: list[str] = []
    out = invoke_local(path, {"x": 1}, log=said.append)
    assert out == [{"x": 1}, list(sys.version_info[:2])]
    assert said == [
        f"{path} is built for Python 3.12 x86_64, this is Python {LOCAL_PYTHON} x86_64: it holds no compiled "
        "distributions, so it runs as built"
    ]


def test_python_option(bundle: BuildReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event()))
    argv = ["lambda", "invoke", "--local", str(bundle.path), "--event", str(path)]
    assert gradekit_cli(*argv, "--python", "3.99") == 1
    assert capsys.readouterr().err == (
        "gradekit: error: --python 3.99: no python3.99 on PATH; give the interpreter's path\n"
    )
    missing = tmp_path / "no-python"
    assert gradekit_cli(*argv, "--python", str(missing)) == 1
    assert capsys.readouterr().err == f"gradekit: error: {missing}: no such file\n"
