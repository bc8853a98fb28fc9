"""The Files API: multipart upload through the real openai SDK, RFT checks with line numbers, safe storage."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from openai.types import FileDeleted, FileObject

from ..rft_task import write_task
from .helpers import client, make_config, serving


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OpenAI, Path]]:
    """An SDK client on a server without a worker, and its data folder."""
    data = tmp_path_factory.mktemp("files-service")
    with serving(make_config(data, start_worker=False)) as (url, _), client(url) as sdk:
        yield sdk, data


def test_upload_retrieve_list_content_delete(api: tuple[OpenAI, Path], tmp_path: Path) -> None:
    sdk, data = api
    train, _ = write_task(tmp_path, n_train=5)
    with open(train, "rb") as f:
        uploaded = sdk.files.create(file=f, purpose="fine-tune")
    FileObject.model_validate(uploaded.model_dump())
    assert uploaded.id.startswith("file-") and uploaded.filename == "train.jsonl"
    assert (uploaded.purpose, uploaded.status, uploaded.status_details) == ("fine-tune", "processed", None)
    assert uploaded.bytes == train.stat().st_size
    assert (data / "files" / f"{uploaded.id}.jsonl").read_bytes() == train.read_bytes()

    assert sdk.files.retrieve(uploaded.id) == uploaded
    assert sdk.files.content(uploaded.id).content == train.read_bytes()
    assert uploaded.id in [f.id for f in sdk.files.list()]

    deleted = sdk.files.delete(uploaded.id)
    assert FileDeleted.model_validate(deleted.model_dump()) == FileDeleted(id=uploaded.id, object="file", deleted=True)
    assert not (data / "files" / f"{uploaded.id}.jsonl").exists()
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.files.retrieve(uploaded.id)
    assert caught.value.status_code == 404
    assert caught.value.body == {
        "message": f"No such File object: {uploaded.id}",
        "type": "invalid_request_error",
        "param": "id",
        "code": "file_not_found",
    }


def test_list_pages_newest_first(api: tuple[OpenAI, Path]) -> None:
    sdk, _ = api
    row = json.dumps({"messages": [{"role": "user", "content": "hi"}], "answer": "hello"}) + "\n"
    ids = [sdk.files.create(file=(f"f{i}.jsonl", row.encode()), purpose="fine-tune").id for i in range(3)]
    first = sdk.files.list(limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2] and first.has_more
    second = sdk.files.list(limit=2, after=first.data[-1].id)
    assert second.data[0].id == ids[0]
    assert [f.id for f in sdk.files.list(order="asc", after=ids[0], limit=2)] == ids[1:]


def test_rft_problems_are_reported_with_the_line(api: tuple[OpenAI, Path]) -> None:
    sdk, _ = api
    good = {"messages": [{"role": "user", "content": "Where is my parcel?"}], "team": "shipping"}
    bad = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "team": "x"}
    body = "\n".join(json.dumps(r) for r in (good, good, bad)) + "\n"
    uploaded = sdk.files.create(file=("tickets.jsonl", body.encode()), purpose="fine-tune")
    assert uploaded.status == "error"
    assert uploaded.status_details == (
        "tickets.jsonl:3: the last message must have role 'user' (messages[1] is 'assistant')"
    )
    not_json = sdk.files.create(file=("broken.jsonl", b'{"messages": [\n'), purpose="fine-tune")
    assert not_json.status_details is not None and not_json.status_details.startswith("broken.jsonl:1: invalid JSON")


def test_the_uploaded_name_never_becomes_a_path(api: tuple[OpenAI, Path]) -> None:
    sdk, data = api
    row = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode() + b"\n"
    uploaded = sdk.files.create(file=("../../escape.jsonl", row), purpose="fine-tune")
    assert uploaded.filename == "../../escape.jsonl"
    quoted = sdk.files.create(file=('tickets-é "v2".jsonl', row), purpose="fine-tune")
    assert quoted.filename == 'tickets-é "v2".jsonl'
    assert sorted(p.name for p in (data / "files").iterdir() if p.name.startswith(uploaded.id)) == [
        f"{uploaded.id}.jsonl"
    ]
    assert not (data.parent / "escape.jsonl").exists() and not (data / "escape.jsonl").exists()


def test_bad_uploads_are_400_naming_the_parameter(api: tuple[OpenAI, Path]) -> None:
    sdk, _ = api
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    assert caught.value.body["param"] == "purpose"  # type: ignore[index]
    base = str(sdk.base_url).rstrip("/")
    request = urllib.request.Request(f"{base}/files", data=b"{}", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(request, timeout=10)
    assert http.value.code == 400
    assert "multipart/form-data" in json.loads(http.value.read())["error"]["message"]
