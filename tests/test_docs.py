"""Every fenced code block of README.md and docs/**/*.md runs as written (tests/docs_blocks.py says how), and the
docs' structure holds: the README's two-command quick start, the documented limits equal the constants, and
the MkDocs site builds in strict mode."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradekit.graders import limits

from .docs_blocks import EXAMPLES, ROOT, RUN, Block, DocsError, block_env, blocks, check_file, pages, run_block

PAGES = {p.relative_to(ROOT).as_posix(): p for p in pages()}


def _skipped() -> list[Block]:
    """The blocks that do not run (a page that breaks the convention fails in its own test, not at collection)."""
    found: list[Block] = []
    for path in PAGES.values():
        with contextlib.suppress(DocsError):
            found += [b for b in blocks(path) if b.skip]
    return found


SKIPPED = _skipped()


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_block_of_the_page_runs_as_written(page: str, tmp_path: Path) -> None:
    cwd = Path(shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__")))
    scripts = tmp_path / "blocks"
    scripts.mkdir()
    env = block_env()
    failure = None
    for block in blocks(PAGES[page]):
        try:
            if block.shows:
                check_file(block, cwd)
            elif block.lang in RUN and not block.skip:
                run_block(block, cwd, scripts, env)
        except DocsError as e:
            failure = str(e)
            break
    if failure:
        pytest.fail(failure, pytrace=False)


@pytest.mark.parametrize("block", SKIPPED, ids=[b.where for b in SKIPPED])
def test_a_skipped_block_says_why(block: Block) -> None:
    assert len(block.skip or "") >= 10, f"{block.where}: say why the block does not run"
    pytest.skip(f"{block.where}: not run: {block.skip}")


def test_every_page_follows_the_block_convention() -> None:
    counts = {page: len(blocks(path)) for page, path in PAGES.items()}
    assert counts["README.md"] >= 2


def test_a_block_with_an_unknown_language_or_a_stray_directive_is_refused(tmp_path: Path) -> None:
    docs = tmp_path / "page.md"
    for text, message in [
        ("```py\nprint(1)\n```\n", "got 'py'"),
        ("```\nls\n```\n", "got 'none'"),
        ("<!-- docs-test: skip: needs a GPU -->\n\n```bash\nls\n```\n", "right before a block"),
        ("<!-- docs-test: later: x -->\n```bash\nls\n```\n", "unknown docs-test directive"),
        ("<!-- docs-test: skip: no -->\n```text\nls\n```\n", "a docs-test skip directive before a ```text block"),
        ("<!-- docs-test: file: a.json -->\n```bash\nls\n```\n", "a docs-test file directive before a ```bash"),
        ("```bash\nls\n", "never closed"),
    ]:
        docs.write_text(text)
        with pytest.raises(DocsError, match=re.escape(message)):
            blocks_of(docs)


def blocks_of(path: Path) -> list[Block]:
    """`blocks` of a page outside the repository (named by its file name)."""
    return blocks(path, root=path.parent)


def test_a_failing_block_names_its_page_and_line(tmp_path: Path) -> None:
    docs = tmp_path / "page.md"
    docs.write_text("# t\n\n```python\nprint('ok')\n```\n\n```bash\necho hi\nfalse\n```\n")
    first, second = blocks_of(docs)
    assert (first.line, second.line) == (3, 7)
    assert run_block(first, tmp_path, tmp_path, block_env()).stdout == "ok\n"
    with pytest.raises(DocsError, match=r"^page\.md:7: the ```bash block exited 1\n--- stdout\nhi\n"):
        run_block(second, tmp_path, tmp_path, block_env())


def test_the_quick_start_is_the_two_make_commands() -> None:
    readme = PAGES["README.md"].read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in blocks(PAGES["README.md"]) if b.lang == "bash" and b.code.strip() in quick]
    assert [line.split("#")[0].strip() for line in block.code.strip().splitlines()] == ["make demo", "make test"]


def test_the_documented_limits_are_the_constants() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(MAX_[A-Z_]+)` \| ([\d,]+) \|", reference, re.M)
    documented = {name: int(value.replace(",", "")) for name, value in rows}
    constants = {name: getattr(limits, name) for name in dir(limits) if name.startswith("MAX_")}
    assert documented == constants


def test_every_environment_variable_gradekit_reads_is_in_the_reference() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    section = reference.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    sources = [p for d in ("graders", "runtime", "lambda_handlers", "trainer_bridge") for p in (ROOT / d).rglob("*.py")]
    named = {n for p in sources for n in re.findall(r"[\"'](GRADEKIT_[A-Z_]+)[\"']", p.read_text(encoding="utf-8"))}
    internal = {"GRADEKIT_FINETUNE_WORKER_CONFIG"}  # set by gradekit serve for its own training worker
    assert len(named) >= 10
    assert sorted(n for n in named - internal if f"`{n}`" not in section) == []


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    site = tmp_path / "site"
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    env = {**block_env(), "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run(mkdocs, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert "RFTJob" in api and "assert_reward" in api  # the API reference is rendered from the docstrings
    assert "fonts.googleapis.com" not in (site / "index.html").read_text(encoding="utf-8")


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    docs = Path(shutil.copytree(ROOT / "docs", tmp_path / "docs"))
    (docs / "getting-started.md").write_text("# Getting started\n\nSee [nowhere](no-such-page.md).\n")
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").replace("docs_dir: docs", f"docs_dir: {docs}")
    (tmp_path / "mkdocs.yml").write_text(config.replace("docs/hooks.py", str(ROOT / "docs" / "hooks.py")))
    (tmp_path / "build").symlink_to(ROOT / "build", target_is_directory=True)
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    out = subprocess.run(mkdocs, cwd=tmp_path, env=block_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "no-such-page.md" in out.stderr


def test_the_readme_links_resolve_and_reach_every_page() -> None:
    readme = PAGES["README.md"].read_text(encoding="utf-8")
    relative = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme) if not re.match(r"[a-z]+://", t)]
    assert [t for t in relative if not (ROOT / t).exists()] == []
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= set(relative)


def test_a_serve_block_runs_against_its_own_server_with_the_named_environment(tmp_path: Path) -> None:
    docs = tmp_path / "page.md"
    docs.write_text(
        "<!-- docs-test: serve: GRADEKIT_API_KEY=k3y --max-body-bytes 4096 -->\n"
        "```python\n"
        "import os, urllib.error, urllib.request\n"
        "url = os.environ['GRADEKIT_URL'] + '/v1/fine_tuning/alpha/graders/validate'\n"
        "try:\n"
        "    urllib.request.urlopen(urllib.request.Request(url, data=b'{}', method='POST'))\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
        "```\n"
    )
    (block,) = blocks_of(docs)
    assert block.serve == "GRADEKIT_API_KEY=k3y --max-body-bytes 4096"
    assert run_block(block, tmp_path, tmp_path, block_env()).stdout == "401\n"  # the key reached the server


def test_a_shown_file_must_hold_what_the_block_shows(tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text('{"type": "string_check",\n "name": "x"}')
    docs = tmp_path / "page.md"
    docs.write_text(
        '<!-- docs-test: file: g.json -->\n```json\n{"name": "x", "type": "string_check"}\n```\n\n'
        '<!-- docs-test: file: g.json -->\n```json\n{"name": "y", "type": "string_check"}\n```\n\n'
        "<!-- docs-test: file: gone.yaml -->\n```yaml\na: 1\n```\n"
    )
    same, different, missing = blocks_of(docs)
    check_file(same, tmp_path)
    with pytest.raises(DocsError, match=r"^page\.md:7: the block differs from examples/g\.json$"):
        check_file(different, tmp_path)
    with pytest.raises(DocsError, match=r"^page\.md:12: the block shows gone\.yaml, which is not in examples/$"):
        check_file(missing, tmp_path)
