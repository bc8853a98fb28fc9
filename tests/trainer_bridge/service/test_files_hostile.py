"""Uploads that must not break the Files API or leave anything stray on disk: deep lines, failures, kills."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from gradekit.runtime.jsonl import TOO_DEEP
from gradekit.trainer_bridge.service import files as files_module
from gradekit.trainer_bridge.service.files import FilePart, Files, form_filename
from gradekit.trainer_bridge.service.store import Store

from .helpers import client, make_config, serving

ROW = json.dumps({"messages": [{"role": "user", "content": "Where is my parcel?"}], "team": "shipping"})


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OpenAI, Path]]:
    """An SDK client on a server without a worker, and its files folder."""
    data = tmp_path_factory.mktemp("files-hostile")
    with serving(make_config(data, start_worker=False)) as (url, _), client(url) as sdk:
        yield sdk, data / "files"


def test_a_line_nested_100000_deep_is_an_error_file_naming_the_line(api: tuple[OpenAI, Path]) -> None:
    sdk, files_dir = api
    body = f"{ROW}\n{'[' * 100_000}{']' * 100_000}\n{ROW}\n".encode()
    uploaded = sdk.files.create(file=("deep.jsonl", body), purpose="fine-tune")
    assert uploaded.status == "error"
    assert uploaded.status_details == f"deep.jsonl:2: invalid JSON: {TOO_DEEP}"
    assert uploaded.bytes == len(body)
    assert (files_dir / f"{uploaded.id}.jsonl").read_bytes() == body
    assert sorted(p.name for p in files_dir.iterdir() if not p.name.startswith("file-")) == []


def test_a_surrogate_in_the_file_name_is_replaced() -> None:
    # (HTTP clients refuse to send one; a form parser decoding raw header bytes could produce one)
    assert form_filename("t\udc80%22.jsonl") == 't\ufffd".jsonl'


def test_a_failed_upload_leaves_nothing_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "db.sqlite")
    files = Files(store, tmp_path / "files")
    parts = [FilePart("purpose", None, b"fine-tune"), FilePart("file", "a.jsonl", (ROW + "\n").encode())]

    def broken_check(path: Path, filename: str) -> str | None:
        assert path.name.startswith(".file-") and path.name.endswith(".tmp") and path.exists()
        raise MemoryError("out of memory while checking")

    monkeypatch.setattr(files_module, "check_rft_file", broken_check)
    with pytest.raises(MemoryError):
        files.upload(parts)
    assert list((tmp_path / "files").iterdir()) == []
    monkeypatch.undo()

    def broken_add(obj: dict[str, object]) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(store, "add_file", broken_add)
    with pytest.raises(RuntimeError):
        files.upload(parts)
    assert list((tmp_path / "files").iterdir()) == []
    assert store.file_ids() == set()


def test_the_next_start_removes_what_a_killed_upload_left(tmp_path: Path) -> None:
    config = make_config(tmp_path, start_worker=False)
    files_dir = tmp_path / "files"
    with serving(config) as (url, _), client(url) as sdk:
        kept = sdk.files.create(file=("kept.jsonl", (ROW + "\n").encode()), purpose="fine-tune")
    # what a process killed inside upload() leaves: a temp file, or the bytes renamed before their row
    (files_dir / ".file-0123456789abcdef01234567.tmp").write_bytes(b"half")
    (files_dir / "file-ffffffffffffffffffffffff.jsonl").write_bytes(b"no row")
    with serving(config) as (url, _), client(url) as sdk:
        assert sorted(p.name for p in files_dir.iterdir()) == [f"{kept.id}.jsonl"]
        assert sdk.files.content(kept.id).content == (ROW + "\n").encode()
