"""The Files API's logic: multipart uploads, RFT format checks, storage by generated id.

An upload is stored as `<data_dir>/files/<file id>.jsonl`; the client's file name is kept only as the
`filename` field, never used as a path. Every upload is checked as OpenAI RFT data (`messages` ending with a
user turn, extra fields, optional `tools`): a file that fails is kept with `status: "error"` and
`status_details` naming the line, and a job that uses it fails in `validating_files` with that message.
"""

from __future__ import annotations

import contextlib
import email.message
import email.parser
import email.policy
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradekit.runtime.server import APIError

from ..data import DataError, load_rows
from .store import Store

__all__ = ["PURPOSE", "FilePart", "Files", "parse_form"]

#: The only purpose this service accepts (what fine-tuning jobs read).
PURPOSE = "fine-tune"


@dataclass(frozen=True)
class FilePart:
    """One part of a multipart form: its field name, file name (None for plain fields) and bytes."""

    name: str
    filename: str | None
    content: bytes


def _header_params(raw: bytes) -> email.message.EmailMessage:
    # Clients send non-ASCII file names as raw UTF-8 in the header (RFC 7578 section 4.2).
    parser = email.parser.Parser(policy=email.policy.HTTP)
    return parser.parsestr(raw.decode("utf-8", "replace") + "\r\n\r\n", headersonly=True)  # type: ignore[return-value]


def parse_form(content_type: str, body: bytes) -> list[FilePart]:
    """The parts of a `multipart/form-data` body (RFC 7578); `APIError` 400 when it is not one."""
    headers = _header_params(f"Content-Type: {content_type}".encode("latin-1", "replace"))
    boundary = headers.get_param("boundary")
    if headers.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise APIError(400, "The request must be multipart/form-data with a boundary (upload with the files API).")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise APIError(400, "The multipart body has no part.")
    rest = body[start + len(delimiter) :]
    parts: list[FilePart] = []
    while not rest.startswith(b"--"):
        line_end = rest.find(b"\r\n")
        if line_end < 0 or rest[:line_end].strip(b" \t"):
            raise APIError(400, "The multipart body is malformed.")
        rest = rest[line_end + 2 :]
        end = rest.find(b"\r\n" + delimiter)
        if end < 0:
            raise APIError(400, "The multipart body ends before its closing boundary.")
        part, rest = rest[:end], rest[end + 2 + len(delimiter) :]
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            head, content = (b"", part[2:]) if part.startswith(b"\r\n") else (part, b"")
        disposition = _header_params(head)
        name = disposition.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise APIError(400, "A multipart part has no Content-Disposition name.")
        filename = disposition.get_filename()
        if filename is not None:  # HTML5's escapes in form-data names (what httpx and browsers send)
            filename = filename.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
        parts.append(FilePart(name, filename, content))
    return parts


def check_rft_file(path: Path, filename: str) -> str | None:
    """Why the file is not RFT data (`name:line: problem`), or None when every row is valid."""
    try:
        load_rows(path, what="file")
    except DataError as e:
        return f"{filename}:{e.line}: {e.message.removeprefix('file: ')}"
    return None


class Files:
    """Uploaded files: objects in the database, bytes under `root` by id."""

    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, file_id: str) -> Path:
        """Where a stored file's bytes are (ids are generated here, so they are safe as names)."""
        return self.root / f"{file_id}.jsonl"

    def remove_orphans(self) -> None:
        """Delete bytes with no database row (an upload killed between the two writes)."""
        known = self.store.file_ids()
        for child in self.root.iterdir():
            if child.name.startswith(".") or child.stem not in known:
                with contextlib.suppress(OSError):
                    child.unlink()

    def upload(self, parts: list[FilePart]) -> dict[str, Any]:
        """Store the form's `file` for its `purpose`; the new file object."""
        fields = {p.name: p for p in parts}
        purpose = fields.get("purpose")
        file = fields.get("file")
        if purpose is None:
            raise APIError(400, "Missing required parameter: 'purpose'.", param="purpose")
        if file is None or file.filename is None:
            raise APIError(400, "Missing required parameter: 'file' (a file part).", param="file")
        purpose_text = purpose.content.decode("utf-8", "replace")
        if purpose_text != PURPOSE:
            raise APIError(
                400, f"Invalid value for 'purpose': {purpose_text!r}; this server accepts 'fine-tune'.", param="purpose"
            )
        filename = file.filename or "upload.jsonl"
        file_id = f"file-{secrets.token_hex(12)}"
        final = self.path(file_id)
        tmp = self.root / f".{file_id}.tmp"
        with open(tmp, "wb") as f:
            f.write(file.content)
            f.flush()
            os.fsync(f.fileno())
        problem = check_rft_file(tmp, filename)
        os.replace(tmp, final)
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(file.content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": PURPOSE,
            "status": "error" if problem else "processed",
            "status_details": problem,
            "expires_at": None,
        }
        self.store.add_file(obj)
        return obj

    def get(self, file_id: str) -> dict[str, Any]:
        """The file object; 404 when there is none."""
        obj = self.store.get_file(file_id)
        if obj is None:
            raise APIError(404, f"No such File object: {file_id}", param="id", code="file_not_found")
        return obj

    def content(self, file_id: str) -> Path:
        """The path of the file's bytes; 404 when there is no such file."""
        self.get(file_id)
        return self.path(file_id)

    def delete(self, file_id: str) -> dict[str, Any]:
        """Delete a file no unfinished job uses; OpenAI's deletion object."""
        self.get(file_id)
        users = self.store.jobs_using_file(file_id)
        if users:
            raise APIError(
                400,
                f"File {file_id} is used by unfinished fine-tuning job(s) {', '.join(users)}; cancel them first.",
                param="file_id",
                code="file_in_use",
            )
        if self.store.delete_file(file_id):
            with contextlib.suppress(FileNotFoundError):
                self.path(file_id).unlink()
        return {"id": file_id, "object": "file", "deleted": True}
