"""Every Python example in the README runs, in order, as one script (so `inspect` can read its functions)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_python_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 5
    script = tmp_path / "readme_examples.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # examples name files under examples/
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "is undefined" in out.stdout


def test_yaml_case_example_is_valid(tmp_path: Path) -> None:
    (block,) = re.findall(r"```yaml\n(.*?)```", README, re.S)
    cases = yaml.safe_load(block)["cases"]
    assert [c["reward"] for c in cases] == [1.0, 0.0]


def test_quick_start_is_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", quick, re.S)
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == ["make demo", "make test"]


def test_the_shell_grading_example_scores_as_its_comment_says() -> None:
    section = README.split("## Grade datasets from the shell", 1)[1]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)[:1]
    command = block.split("gradekit run ", 1)[1].split("#")[0].replace("\\\n", " ")
    script = f"{Path(sys.executable).parent / 'gradekit'} run {command}"
    where = ROOT / "examples" / "security_review"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=where)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["reward"] == 1.0
