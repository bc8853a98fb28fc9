"""`gradekit lambda invoke` with an event that is not JSON: one line naming the file, exit 1, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradekit.runtime.cli import main


@pytest.mark.parametrize(
    ("text", "reason"),
    [("nope", "Expecting value"), ("[" * 100_000, "nested too deeply")],
)
def test_an_event_that_is_not_json_names_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, reason: str
) -> None:
    event = tmp_path / "event.json"
    event.write_text(text)
    code = main(["lambda", "invoke", "--local", str(tmp_path / "bundle.zip"), "--event", str(event)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"gradekit: error: {event}: the event is not JSON: ") and reason in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
