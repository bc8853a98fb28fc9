"""The runtime registers the default environment: sandboxed Python graders and a lazily built judge client."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

from gradekit.graders import PythonGrader, run
from gradekit.graders.api import shared_env
from gradekit.runtime.env import LazyModelClient
from gradekit.runtime.sandbox import SandboxPool


def test_entry_point_gives_the_runtime_env() -> None:
    (ep,) = [e for e in entry_points(group="gradekit.env") if e.name == "runtime"]
    assert ep.value == "gradekit.runtime.env:default_env"
    env = shared_env()
    assert isinstance(env.python, SandboxPool)
    assert isinstance(env.model, LazyModelClient)


def test_run_uses_the_sandbox_by_default() -> None:
    g = PythonGrader(name="p", source="import os\ndef grade(sample, item):\n    return float(os.getpid())")
    import os

    r = run(g, "x")
    assert r.errors.flags() == []
    assert r.reward != float(os.getpid())  # graded in a worker process, not here


def test_importing_runtime_stays_light() -> None:
    import subprocess

    code = (
        "import gradekit.runtime, gradekit.runtime.env, sys; print('openai' in sys.modules, 'fastapi' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
