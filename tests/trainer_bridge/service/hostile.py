"""A reward function that kills the process it grades in, as hostile or broken grader code can.

The service tests map a Lambda ARN to `tests.trainer_bridge.service.hostile:kill_the_worker` (a server-side
function grader runs in the training worker), so a job using that ARN kills its worker every time it grades.
"""

from __future__ import annotations

import os
import signal
from typing import Any

#: The file each killing call appends its process id to (set by the test, inherited by the worker).
KILLS_VAR = "GRADEKIT_TEST_KILLS"


def kill_the_worker(sample: Any, item: Any) -> float:
    """Note this process's id in `$GRADEKIT_TEST_KILLS`, then SIGKILL this process."""
    with open(os.environ[KILLS_VAR], "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)
    return 0.0  # never reached
