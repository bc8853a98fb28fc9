"""Each fine-tuning job grades `python` graders in sandbox workers of its own (the pool's `owner`)."""

from __future__ import annotations

import asyncio

from gradekit.graders import PythonGrader
from gradekit.graders.api import shared_env
from gradekit.runtime.sandbox import OwnedPool
from gradekit.trainer_bridge.service.worker import job_env

SOURCE = "import os\nWORKER = os.urandom(8).hex()\ndef grade(sample, item):\n    return WORKER\n"


def test_each_job_grades_in_workers_of_its_own() -> None:
    a, b = job_env("ftjob-a"), job_env("ftjob-b")
    assert isinstance(a.python, OwnedPool) and isinstance(b.python, OwnedPool)
    assert a.python.pool is b.python.pool is shared_env().python  # one pool for the process
    assert (a.python.owner, b.python.owner) == ("ftjob-a", "ftjob-b")
    assert a.model is shared_env().model
    grader = PythonGrader(name="who", source=SOURCE)

    def workers(env_python: OwnedPool) -> set[str]:
        return {c.value for c in asyncio.run(env_python.run(grader, [{}] * 4, [0] * 4))}

    first_a, again_a, first_b = workers(a.python), workers(a.python), workers(b.python)
    assert first_a & again_a  # the same job finds its warm worker
    assert not (first_a | again_a) & first_b  # the same grader source, another job: never the same worker
