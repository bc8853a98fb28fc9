"""A worker that dies after a C-level allocation fails near the memory limit is a `memory_limit`, not a crash."""

from __future__ import annotations

import asyncio
import textwrap

from gradekit.graders import PythonGrader
from gradekit.runtime.sandbox import SandboxPool

# No Python MemoryError anywhere: libc's malloc returns NULL at the address-space limit and the "extension"
# aborts, as C code does on a failed allocation. Only the sandbox's fallback (peak memory) can tell.
C_ALLOCATION = """
import ctypes, signal, os

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.memset.restype = ctypes.c_void_p
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

def grade(sample, item):
    if item != "hoard":
        return item
    chunk = 1 << 20
    while True:
        block = libc.malloc(chunk)
        if not block:
            os.kill(os.getpid(), signal.SIGABRT)  # what abort() in a C extension does
        libc.memset(block, 1, chunk)  # resident, so the worker's peak RSS reaches the limit
"""


def test_c_allocation_failure_near_the_limit_is_memory_limit() -> None:
    grader = PythonGrader(name="t", source=textwrap.dedent(C_ALLOCATION))
    with SandboxPool(workers=1, memory_bytes=512 * 1024**2, timeout=60.0) as pool:
        calls = asyncio.run(pool.run(grader, [{}] * 3, [1.0, "hoard", 2.0]))
    assert [c.value for c in calls if c.error is None] == [1.0, 2.0]
    error = calls[1].error
    assert error is not None
    assert (error.flag, error.detail) == ("python_grader_server_error", "memory_limit"), error.message
    assert error.message == "grade() ran out of memory (limit 512 MiB)"
