"""The Files API's logic: multipart uploads, RFT format checks, storage by generated id.

An upload is stored as `<data_dir>/files/<file id>.jsonl`; the client's file name is kept only as the
`filename` field, never used as a path. Every upload is checked as OpenAI RFT data (`messages` ending with a
user turn, extra fields, optional `tools`): a file that fails (a line that is not JSON, or nests too deeply
to parse, included) is kept with `status: "error"` and `status_details` naming the line, and a job that uses
it fails in `validating_files` with that message. The bytes are written to a hidden temp file, fsynced and
renamed into place (the rename fsynced too) before the database row is added; a failed upload removes what
it wrote, and `remove_orphans` (run at every start) removes what a killed process left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradekit.runtime.jsonl import TOO_DEEP, clean_text
from gradekit.runtime.server import APIError

from ..loop.atomic_files import fsync_dir
from ..loop.data import DataError, load_rows
from .store import Store

__all__ = ["PURPOSE", "FilePart", "Files", "form_filename"]

#: The only purpose this service accepts (what fine-tuning jobs read).
PURPOSE = "fine-tune"


@dataclass(frozen=True)
class FilePart:
    """One part of a multipart form: its field name, file name (None for plain fields) and bytes."""

    name: str
    filename: str | None
    content: bytes


def form_filename(raw: str | None) -> str | None:
    """A multipart part's file name with HTML5's form-data escapes undone (what httpx and browsers send)."""
    if raw is None:
        return None
    return clean_text(raw.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n"))


def check_rft_file(path: Path, filename: str) -> str | None:
    """Why the file is not RFT data (`name:line: problem`), or None when every row is valid."""
    try:
        load_rows(path, what="file")
    except DataError as e:
        return f"{filename}:{e.line}: {e.message.removeprefix('file: ')}"
    except RecursionError:  # lines are parsed safely (a DataError naming the line): this is a last resort
        return f"{filename}: {TOO_DEEP}"
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
        """Delete bytes with no database row and hidden temp files (what an upload killed midway left)."""
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
        try:
            with open(tmp, "wb") as f:
                f.write(file.content)
                f.flush()
                os.fsync(f.fileno())
            problem = check_rft_file(tmp, filename)
            os.replace(tmp, final)
            fsync_dir(self.root)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
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
        try:
            self.store.add_file(obj)
        except BaseException:
            with contextlib.suppress(OSError):
                final.unlink()
            raise
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
