"""The fenced code blocks of README.md and docs/**/*.md, and how the docs test runs them.

The convention (build/HELPERS.md, "Docs blocks"): ```python and ```bash blocks run, in order, page by
page, with cwd a fresh temp copy of examples/ shared by the blocks of one page; ```text, ```json and
```yaml blocks are shown, not run. On the line right before a block, `<!-- docs-test: skip: <reason> -->`
keeps it from running and `<!-- docs-test: serve: <args> -->` runs it against `gradekit serve <args>` on
127.0.0.1, with the server's URL in $GRADEKIT_URL (leading `NAME=value` words of the args are the server's
environment, as in a shell). `<!-- docs-test: file: <path> -->` before a ```json, ```yaml or ```text block
says the block shows that file of the page's folder: the test checks it holds the same (parsed) data.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from .http import ServeFailed, gradekit_serve

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RUN = frozenset({"python", "bash"})
SHOWN = frozenset({"text", "json", "yaml"})
#: Longest one block may run, in seconds (the training blocks use tiny settings and take well under this).
BLOCK_TIMEOUT = 300
#: Longest a `gradekit serve` may take to answer /health.
SERVE_TIMEOUT = 60

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[a-z]+)\s*:\s*(?P<arg>.*?)\s*-->\s*$")
_MENTION = re.compile(r"^\s*<!--\s*docs-test")


class DocsError(Exception):
    """A page that breaks the docs convention, or a block that failed; the message names the page and line."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str  #: the page, relative to the repository root
    line: int  #: 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None  #: the reason it does not run
    serve: str | None = None  #: the `gradekit serve` arguments it runs against
    shows: str | None = None  #: the file (relative to the page's folder) a shown block holds

    @property
    def where(self) -> str:
        """`page:line` of the block."""
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md and every docs/**/*.md, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The fenced blocks of one page; raises `DocsError` for a block without a known language or a bad directive."""
    page = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            if _MENTION.search(lines[i]) and not (i + 1 < len(lines) and _FENCE.match(lines[i + 1])):
                raise DocsError(f"{page}:{i + 1}: a docs-test directive must be on the line right before a block")
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        close = re.compile(rf"^ {{0,{len(indent) + 3}}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), None)
        if end is None:
            raise DocsError(f"{page}:{i + 1}: the block is never closed")
        lang = info.split()[0] if info else ""
        if lang not in RUN | SHOWN:
            raise DocsError(
                f"{page}:{i + 1}: a block's language must be one of {', '.join(sorted(RUN | SHOWN))}, "
                f"got {lang or 'none'!r} (output is ```text)"
            )
        code = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end]) + "\n"
        skip = serve = shows = None
        directive = _DIRECTIVE.match(lines[i - 1]) if i else None
        if directive:
            kind, arg = directive["kind"], directive["arg"]
            if kind not in {"skip", "serve", "file"} or (kind != "serve" and not arg):
                raise DocsError(f"{page}:{i}: unknown docs-test directive {lines[i - 1].strip()!r}")
            if (kind == "file") != (lang in SHOWN):
                raise DocsError(f"{page}:{i}: a docs-test {kind} directive before a ```{lang} block")
            skip, serve, shows = (arg if kind == k else None for k in ("skip", "serve", "file"))
        found.append(Block(page, i + 1, lang, code, skip, serve, shows))
        i = end + 1
    return found


def block_env() -> dict[str, str]:
    """The environment blocks run in: this one less gradekit's, OpenAI's and AWS's settings, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADEKIT_", "OPENAI_", "AWS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(MPLBACKEND="Agg", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@contextmanager
def serving(block: Block, cwd: Path, env: dict[str, str], logs: Path) -> Iterator[str]:
    """`gradekit serve <the block's args>` on 127.0.0.1 and a free port, answering /health; its URL. Stopped after."""
    words = shlex.split(block.serve or "")
    env = dict(env)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    log = logs / f"serve-{block.line}.log"
    try:
        with gradekit_serve(words, log=log, cwd=cwd, env=env, timeout=SERVE_TIMEOUT, command=("gradekit", "serve")) as (
            url,
            _,
        ):
            yield url
    except ServeFailed as e:  # raised only while it starts: the blocks run inside raise their own errors
        raise DocsError(f"{block.where}: {e}") from None


def run_block(block: Block, cwd: Path, scripts: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs one ```python or ```bash block in `cwd`; raises `DocsError` with its output when it fails."""
    stem = re.sub(r"[^\w]+", "_", block.page.removesuffix(".md"))
    script = scripts / f"{stem}_L{block.line}.{'py' if block.lang == 'python' else 'sh'}"
    script.write_text(block.code, encoding="utf-8")
    command = [sys.executable, str(script)] if block.lang == "python" else ["bash", "-euo", "pipefail", str(script)]
    env = dict(env)
    with serving(block, cwd, env, scripts) if block.serve is not None else _nothing() as url:
        if url:
            env["GRADEKIT_URL"] = url
        proc = _run(command, cwd, env)
        server = (scripts / f"serve-{block.line}.log").read_text(errors="replace") if url else ""
    if proc is None or proc.returncode:
        what = f"ran past {BLOCK_TIMEOUT} s" if proc is None else f"exited {proc.returncode}"
        output = "" if proc is None else f"\n--- stdout\n{_tail(proc.stdout)}\n--- stderr\n{_tail(proc.stderr)}"
        log = f"\n--- gradekit serve {block.serve}\n{_tail(server)}" if url else ""
        raise DocsError(f"{block.where}: the ```{block.lang} block {what}{output}{log}")
    return proc


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str] | None:
    """Runs `command` in its own process group; None if it ran past `BLOCK_TIMEOUT` (the whole group is killed)."""
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # what the block left running in the background
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def check_file(block: Block, cwd: Path) -> None:
    """Raises `DocsError` unless the file a shown block names holds what the block shows (JSON/YAML: the same data)."""
    path = cwd / (block.shows or "")
    if not path.is_file():
        raise DocsError(f"{block.where}: the block shows {block.shows}, which is not in examples/")
    text = path.read_text(encoding="utf-8")
    if block.lang == "json":
        same = json.loads(text) == json.loads(block.code)
    elif block.lang == "yaml":
        same = yaml.safe_load(text) == yaml.safe_load(block.code)
    else:
        same = text.strip() == block.code.strip()
    if not same:
        raise DocsError(f"{block.where}: the block differs from examples/{block.shows}")
