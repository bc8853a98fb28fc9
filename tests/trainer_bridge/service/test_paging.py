"""`has_more` of every list endpoint at exact page boundaries: a page that takes the last item says no more follow."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from gradekit.trainer_bridge.loop.events import EventLog

from ..rft_task import write_task
from .helpers import client, make_config, rft_method, serving, upload

N = 5
#: Lists one page: (limit, after) -> (the page's ids, has_more).
Lister = Callable[[int, str | None], tuple[list[str], bool]]


@pytest.fixture(scope="module")
def listers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[list[str], Lister]]]:
    """Per endpoint: every id in list order (N of each) and a lister, on a server without a worker."""
    root = tmp_path_factory.mktemp("paging")
    train, _ = write_task(root / "task", n_train=2, n_valid=1)
    config = make_config(root / "data", start_worker=False)
    with serving(config) as (url, _), client(url) as sdk:
        files = [upload(sdk, train) for _ in range(N)]
        tag = {"paging": "yes"}
        jobs = [
            sdk.fine_tuning.jobs.create(
                model="tiny-local", training_file=files[0], metadata=tag, extra_body={"method": rft_method()}
            ).id
            for _ in range(N)
        ]
        job = jobs[0]
        run = config.jobs_dir / job
        run.mkdir(parents=True, exist_ok=True)
        log = EventLog(run / "events.jsonl")
        events = [log.emit(f"event {i}")["id"] for i in range(N)]
        for step in range(1, N + 1):
            folder = run / "checkpoints" / f"step-{step:06d}"
            folder.mkdir(parents=True)
            meta = {"id": f"ftckpt_{step}", "step_number": step, "metrics": {"step": step}, "created_at": 0}
            (folder / "checkpoint.json").write_text(json.dumps(meta))
        checkpoints = [f"ftckpt_{step}" for step in range(1, N + 1)]

        def page_of(listed: object) -> tuple[list[str], bool]:
            return [x.id for x in listed.data], bool(listed.has_more)  # type: ignore[attr-defined]

        def by(call: Callable[..., object]) -> Lister:
            return lambda limit, after: page_of(call(limit=limit, **({"after": after} if after else {})))

        jobs_api = sdk.fine_tuning.jobs
        yield {
            "files": (files[::-1], by(sdk.files.list)),
            "files ascending": (files, by(lambda **kw: sdk.files.list(order="asc", **kw))),
            "jobs": (jobs[::-1], by(lambda **kw: jobs_api.list(metadata=tag, **kw))),
            "events": (events[::-1], by(lambda **kw: jobs_api.list_events(job, **kw))),
            "checkpoints": (checkpoints[::-1], by(lambda **kw: jobs_api.checkpoints.list(job, **kw))),
        }


@pytest.mark.parametrize("endpoint", ["files", "files ascending", "jobs", "events", "checkpoints"])
@pytest.mark.parametrize("skip", [0, 2], ids=["first page", "after a cursor"])
def test_has_more_at_the_boundary(listers: dict[str, tuple[list[str], Lister]], endpoint: str, skip: int) -> None:
    ids, list_page = listers[endpoint]
    assert len(ids) == N
    after = ids[skip - 1] if skip else None
    remaining = ids[skip:]
    for limit, more in ((len(remaining) - 1, True), (len(remaining), False), (len(remaining) + 1, False)):
        assert list_page(limit, after) == (remaining[:limit], more), f"limit={limit}, after={after}"
