"""The wheel installs into a clean venv under the `gradekit` namespace, and every public module imports."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# gradekit.testing.plugin is left out: it needs pytest, which only test environments have.
PUBLIC_MODULES = [
    "gradekit.graders",
    "gradekit.graders.aggregate",
    "gradekit.graders.export",
    "gradekit.graders.formula",
    "gradekit.graders.similarity",
    "gradekit.graders.tool_calls",
    "gradekit.testing",
    "gradekit.runtime",
    "gradekit.lambda_handlers",
    "gradekit.trainer_bridge",
]
#: The dashboard's static files (package data): an installed wheel must hold every one.
DASHBOARD = ROOT / "runtime" / "dashboard" / "static"
DASHBOARD_FILES = sorted(p.relative_to(DASHBOARD).as_posix() for p in DASHBOARD.rglob("*") if p.is_file())


@pytest.mark.slow
def test_wheel_installs_and_imports(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("gradekit-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(wheel)], check=True, env=env, capture_output=True)
    code = (
        "import importlib, sys, pathlib\n"
        f"mods = {PUBLIC_MODULES!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        "import gradekit.graders as g\n"
        "site = pathlib.Path(g.__file__).parents[2]\n"
        "assert not (site / 'graders').exists() and not (site / 'runtime').exists(), 'top-level package leaked'\n"
        "assert 'torch' not in sys.modules\n"
        "r = g.run({'type': 'string_check', 'name': 'x', 'input': '{{ sample.output_text }}',\n"
        "           'reference': '{{ item.answer }}', 'operation': 'eq'}, 'yes', {'answer': 'yes'})\n"
        "print(r.reward, pathlib.Path(g.__file__).parent.name)\n"
        "import importlib.util\n"
        "static = pathlib.Path(importlib.util.find_spec('gradekit.runtime.dashboard').origin).parent / 'static'\n"
        "found = sorted(p.relative_to(static).as_posix() for p in static.rglob('*') if p.is_file())\n"
        f"assert found == {DASHBOARD_FILES!r}, found\n"
    )
    out = subprocess.run([str(py), "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.0", "graders"]
