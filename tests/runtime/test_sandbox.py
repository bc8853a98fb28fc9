"""The sandbox's reliability suite: each failure hits only its own sample, the pool keeps serving, nothing leaks."""

from __future__ import annotations

import asyncio
import glob
import itertools
import json
import math
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gradekit.graders import Call, Env, InProcessPythonExecutor, PythonGrader, run_batch
from gradekit.graders.errors import MAX_DETAIL_CHARS
from gradekit.runtime.sandbox import ForeignValue, SandboxPool, available_packages

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="the leak checks read /proc")


def _children() -> set[int]:
    """Process ids that descend from this process (zombies included)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _worker_dirs() -> list[str]:
    """The temp directories this process's workers have on the host."""
    parent = os.path.join(tempfile.gettempdir(), f"gradekit-sandboxes-{os.getuid()}")
    return glob.glob(os.path.join(parent, f"{os.getpid()}-*"))


def _grade(
    pool: SandboxPool, source: str, items: Sequence[Any], samples: Sequence[dict[str, Any]] | None = None
) -> list[Call]:
    grader = PythonGrader(name="t", source=textwrap.dedent(source))
    return asyncio.run(pool.run(grader, samples if samples is not None else [{}] * len(items), items))


def _flags(calls: Sequence[Call]) -> list[str | None]:
    return [c.error.flag if c.error else None for c in calls]


def _values(calls: Sequence[Call]) -> list[Any]:
    return [None if c.error else c.value for c in calls]


# Children this test process had before the module ran (e.g. the default environment's pool, started by
# other test modules): not this module's to account for.
_PREEXISTING: set[int] = set()


@pytest.fixture(scope="module", autouse=True)
def _preexisting_children() -> None:
    _PREEXISTING.update(_children())


def _assert_serving(pool: SandboxPool, others: set[int] | None = None) -> None:
    """The pool still grades, and its only child processes (besides `others`) are its live workers."""
    calls = _grade(pool, "def grade(sample, item):\n    return item * 2.0\n", [1, 2, 3])
    assert _values(calls) == [2.0, 4.0, 6.0]
    workers = set(pool.pids)
    assert all(_ancestors(pid) & workers for pid in _children() - (others or set()) - _PREEXISTING - workers)


def _ancestors(pid: int) -> set[int]:
    found = set()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        found.add(pid)
    return found


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    """A shared 2-worker pool with default limits (a short timeout, so a bug cannot hang the suite)."""
    before = _children()
    with SandboxPool(workers=2, timeout=30.0) as shared:
        yield shared
    assert _children() - before == set()


@pytest.fixture
def fresh_children() -> Iterator[set[int]]:
    """The child processes from before the test; the test fails if it leaves another one behind."""
    before = _children()
    yield before
    assert _children() - before == set()


# ---------------------------------------------------------------------------------------------- results


def test_rewards_through_run_batch(pool: SandboxPool) -> None:
    grader = PythonGrader(
        name="exact",
        source="def grade(sample, item):\n    return 1.0 if sample['output_text'] == item['answer'] else 0.0\n",
    )
    samples, items = ["4", "5", "4", "four"], [{"answer": "4"}] * 4
    sandboxed = run_batch(grader, samples, items, env=Env(python=pool))
    assert sandboxed.rewards == [1.0, 0.0, 1.0, 0.0]
    assert [r.errors.flags() for r in sandboxed] == [[], [], [], []]
    assert run_batch(grader, samples, items, env=Env(python=InProcessPythonExecutor())).rewards == sandboxed.rewards


ODD_RESULTS = """
def grade(sample, item):
    return {
        "nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "text": "0.5", "nothing": None,
        "true": True, "list": [1, 2], "int": 3, "float": 0.25,
    }[item["kind"]]
"""

ODD_ITEMS = [{"kind": k} for k in ("nan", "inf", "-inf", "text", "nothing", "true", "list", "int", "float")]


def test_odd_results_reach_the_parent_as_they_are(pool: SandboxPool) -> None:
    values = _values(_grade(pool, ODD_RESULTS, ODD_ITEMS))
    assert math.isnan(values[0])
    assert values[1:6] == [math.inf, -math.inf, "0.5", None, True]
    assert isinstance(values[6], ForeignValue) and type(values[6]).__name__ == "list" and repr(values[6]) == "[1, 2]"
    assert values[7:] == [3, 0.25] and type(values[7]) is int


def test_odd_results_become_runtime_errors_with_reward_zero_and_none_is_no_reward(pool: SandboxPool) -> None:
    grader = PythonGrader(name="odd", source=ODD_RESULTS)
    result = run_batch(grader, [""] * len(ODD_ITEMS), ODD_ITEMS, env=Env(python=pool))
    assert result.rewards == [0.0] * 7 + [3.0, 0.25]
    flags = [r.errors.flags() for r in result]
    runtime_error = ["python_grader_runtime_error"]
    # None says "this grader does not apply": no flag, and no reward (its 0.0 on the wire is not a grade)
    assert flags == [runtime_error] * 4 + [[]] + [runtime_error] * 2 + [[], []]
    assert [result.no_reward(i) for i in range(len(ODD_ITEMS))] == [None] * 4 + ["not_applicable"] + [None] * 4
    assert result[6].metadata.scores["error_details"]["odd"]["message"] == "grader returned list [1, 2], not a number"
    assert result[0].errors.python_grader_runtime_error_details == "grade() returned a non-finite nan"


def test_source_is_compiled_once_per_worker(pool: SandboxPool) -> None:
    source = """
    import os
    WORKER, CALLS = os.urandom(8).hex(), 0

    def grade(sample, item):
        global CALLS
        CALLS += 1
        return f"{WORKER} {CALLS}"
    """
    values = _values(_grade(pool, source, list(range(12))))
    per_worker: dict[str, list[int]] = {}
    for value in values:
        pid, calls = value.split()
        per_worker.setdefault(pid, []).append(int(calls))
    assert 1 <= len(per_worker) <= 2
    # One module per worker: its counter never restarts.
    assert all(counts == list(range(1, len(counts) + 1)) for counts in per_worker.values())
    assert sum(len(counts) for counts in per_worker.values()) == 12


def test_a_batch_is_shared_out_to_the_workers(pool: SandboxPool) -> None:
    source = """
    import os, time
    WORKER = os.urandom(8).hex()

    def grade(sample, item):
        start = time.monotonic()
        time.sleep(0.2)
        return f"{WORKER} {start} {time.monotonic()}"
    """
    n = 8
    records = [value.split() for value in _values(_grade(pool, source, list(range(n))))]
    spans: dict[str, list[tuple[float, float]]] = {}
    for pid, start, end in records:
        spans.setdefault(pid, []).append((float(start), float(end)))
    assert len(spans) == 2
    for worker_spans in spans.values():  # each worker grades one sample at a time
        ordered = sorted(worker_spans)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ordered))
    a, b = spans.values()
    assert any(x[0] < y[1] and y[0] < x[1] for x in a for y in b)  # the two workers overlap in time
    assert max(len(s) for s in spans.values()) <= n // 2 + 1  # about n/2 rounds, not n


def test_concurrent_runs_from_several_tasks(pool: SandboxPool) -> None:
    graders = [
        PythonGrader(name=f"g{k}", source=f"def grade(sample, item):\n    return item + {k}.0\n") for k in range(3)
    ]

    async def main() -> list[list[Call]]:
        return await asyncio.gather(*(pool.run(g, [{}] * 5, list(range(5))) for g in graders))

    results = asyncio.run(main())
    assert [_values(calls) for calls in results] == [[i + k for i in range(5)] for k in range(3)]


def test_threads_and_async_grade_work(pool: SandboxPool) -> None:
    source = """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    async def grade(sample, item):
        with ThreadPoolExecutor(2) as executor:
            total = sum(executor.map(lambda x: x * x, range(item)))
        return float(await double(total))
    """
    assert _values(_grade(pool, source, [3, 4])) == [10.0, 28.0]


def test_installed_grader_image_packages_are_importable(pool: SandboxPool) -> None:
    packages = available_packages()
    assert packages["jsonschema"] and packages["pydantic"] and packages["pyyaml"]  # gradekit's own dependencies
    source = """
    import jsonschema, pydantic, yaml

    def grade(sample, item):
        jsonschema.validate(item, {"type": "object"})
        values = pydantic.TypeAdapter(list[float]).validate_python(yaml.safe_load(item["values"]))
        if item["numpy"]:
            import numpy
            return float(numpy.mean(values))
        return sum(values) / len(values)
    """
    assert _values(_grade(pool, source, [{"values": "[1, 2, 3]", "numpy": packages["numpy"]}])) == [2.0]


# --------------------------------------------------------------------------------------------- failures


def test_exceptions_and_unbounded_recursion_are_runtime_errors(pool: SandboxPool) -> None:
    source = """
    import sys

    def deeper(n):
        return deeper(n + 1)

    def grade(sample, item):
        if item == "raise":
            print("about to fail")
            raise ValueError("no good")
        if item == "recurse":
            return deeper(0)
        if item == "low-limit":
            sys.setrecursionlimit(60)
            return 0.0
        if item == "deep":
            return float(len([deeper] * 10)) if sys.getrecursionlimit() > 500 else -1.0
        return 1.0
    """
    calls = _grade(pool, source, ["ok", "raise", "recurse", "ok", "low-limit", "deep", "deep"])
    assert _flags(calls) == [None, "python_grader_runtime_error", "python_grader_runtime_error", None, None, None, None]
    assert _values(calls) == [1.0, None, None, 1.0, 0.0, 10.0, 10.0]  # the recursion limit was put back
    raised, recursed = calls[1].error, calls[2].error
    assert raised is not None and recursed is not None
    assert raised.message == "ValueError: no good"
    assert (
        raised.detail is not None
        and "about to fail" in raised.detail
        and 'raise ValueError("no good")' in raised.detail
    )
    assert recursed.message.startswith("RecursionError: maximum recursion depth exceeded")
    assert recursed.detail is not None and len(recursed.detail) <= MAX_DETAIL_CHARS
    _assert_serving(pool)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("raise ImportError('missing')\ndef grade(sample, item):\n    return 1.0\n", "ImportError: missing"),
        ("def grade(sample, item):\n    return 1.0\ngrade = None\n", "defines no grade(sample, item)"),
        ("return 1\ndef grade(sample, item):\n    return 1.0\n", "SyntaxError: 'return' outside function"),
    ],
)
def test_sources_that_fail_to_load_fail_every_sample(pool: SandboxPool, source: str, message: str) -> None:
    calls = _grade(pool, source, [1, 2, 3])
    assert _flags(calls) == ["python_grader_runtime_error"] * 3
    for call in calls:
        assert call.error is not None and call.error.message.startswith("grader source failed to load")
        assert message in call.error.message
    _assert_serving(pool)


def test_a_sample_that_is_not_json_fails_alone(pool: SandboxPool) -> None:
    calls = _grade(pool, "def grade(sample, item):\n    return float(item)\n", [1, object(), 2])
    assert _flags(calls) == [None, "python_grader_runtime_error", None]
    assert _values(calls) == [1.0, None, 2.0]
    assert calls[1].error is not None and "cannot be sent to the sandbox" in calls[1].error.message


def test_timeouts_replace_the_worker(fresh_children: set[int]) -> None:
    source = """
    import os, time

    def grade(sample, item):
        if item["do"] == "spin":
            while True:
                pass
        if item["do"] == "sleep":
            time.sleep(600)
        return item["do"]
    """
    items = [{"do": do} for do in (1.0, "spin", 2.0, "sleep", 3.0)]
    # 3 s: the quick samples finish far inside it even on a loaded 2-core machine
    with SandboxPool(workers=2, timeout=3.0) as pool:
        calls = _grade(pool, source, items)
        assert _flags(calls) == [None, "unresponsive_reward_error", None, "unresponsive_reward_error", None]
        assert _values(calls) == [1.0, None, 2.0, None, 3.0]
        assert calls[1].error is not None and calls[1].error.message == "grade() did not finish within 3 s"
        _assert_serving(pool, fresh_children)

        # A source that hangs while loading fails every sample, without hanging once per sample.
        looping = "while True:\n    pass\ndef grade(sample, item):\n    return 1.0\n"
        calls = _grade(pool, looping, [1, 2, 3, 4, 5])
        assert _flags(calls) == ["unresponsive_reward_error"] * 5
        assert calls[4].error is not None and "while loading the grader source" in calls[4].error.message
        _assert_serving(pool, fresh_children)


def test_cpu_time_limit(fresh_children: set[int]) -> None:
    source = """
    def grade(sample, item):
        if item == "burn":
            while True:
                pass
        return item
    """
    with SandboxPool(workers=1, cpu_time=1.0, timeout=60.0) as pool:
        calls = _grade(pool, source, [1.0, "burn", 2.0])
        assert _flags(calls) == [None, "python_grader_server_error", None]
        assert _values(calls) == [1.0, None, 2.0]
        error = calls[1].error
        assert error is not None and error.detail == "cpu_time_limit"
        assert error.message == "grade() used more than 1 s of CPU time"
        _assert_serving(pool, fresh_children)


def test_memory_limit(fresh_children: set[int]) -> None:
    source = """
    def grade(sample, item):
        if item == "grow":
            hoard = []
            while True:
                hoard.append(bytearray(10**7))
        if item == "crumbs":
            hoard = []
            while True:
                hoard.append(str(len(hoard)) * 100)
        if item == "huge":
            return len(bytearray(10**12))
        return item
    """
    with SandboxPool(workers=2, memory_bytes=256 * 1024**2) as pool:
        calls = _grade(pool, source, [1.0, "grow", "crumbs", "huge", 2.0])
        assert _flags(calls) == [None] + ["python_grader_server_error"] * 3 + [None]
        assert [c.error.detail for c in calls if c.error] == ["memory_limit"] * 3, [
            c.error.message for c in calls if c.error
        ]
        assert _values(calls) == [1.0, None, None, None, 2.0]
        _assert_serving(pool, fresh_children)


def test_no_child_processes(pool: SandboxPool) -> None:
    source = """
    import os, subprocess

    def grade(sample, item):
        if item == "fork":
            while True:
                if os.fork() == 0:
                    os._exit(0)
        if item == "run":
            subprocess.run(["true"], check=True)
        if item == "status":
            lines = open("/proc/self/status").read().splitlines()
            return {k: v.strip() for k, v in (line.split(":", 1) for line in lines)}["Seccomp"]
        started = 0
        for attempt in range(50):
            for spawn in (os.fork, lambda: subprocess.run(["true"]), lambda: os.system("true"),
                          lambda: os.posix_spawn("/bin/true", ["true"], {})):
                try:
                    if spawn() == 0:
                        os._exit(0)
                    started += 1
                except OSError:
                    pass
        return float(started)
    """
    calls = _grade(pool, source, ["fork", "run", "count", "status"])
    assert _flags(calls) == ["python_grader_runtime_error", "python_grader_runtime_error", None, None]
    assert (
        calls[0].error is not None
        and calls[0].error.message == "PermissionError: os.fork is not allowed in the grader sandbox"
    )
    assert calls[1].error is not None and "subprocess.Popen is not allowed" in calls[1].error.message
    assert calls[2].value == 0.0
    if pool.isolation.get("seccomp"):
        assert calls[3].value == "2"  # SECCOMP_MODE_FILTER: refused by the kernel even for native code
    _assert_serving(pool)


def test_no_network(pool: SandboxPool) -> None:
    source = """
    import socket

    def grade(sample, item):
        if item["do"] == "connect":
            socket.create_connection(("127.0.0.1", item["port"]), timeout=2)
        if item["do"] == "socket":
            socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("127.0.0.1", item["port"]))
        if item["do"] == "unix":
            socket.socket(socket.AF_UNIX).connect("/run/any.sock")
        if item["do"] == "interfaces":
            return " ".join(line.split(":")[0].strip() for line in open("/proc/self/net/dev").readlines()[2:])
        return 1.0
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        items = [{"do": do, "port": port} for do in ("connect", "socket", "unix", "fine", "interfaces")]
        calls = _grade(pool, source, items)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert _flags(calls) == ["python_grader_runtime_error"] * 3 + [None, None]
    messages = [c.error.message for c in calls[:3] if c.error]
    assert messages == [
        "PermissionError: socket.getaddrinfo is not allowed in the grader sandbox",
        "PermissionError: socket.__new__ is not allowed in the grader sandbox",
        "PermissionError: [Errno 1] Operation not permitted",  # socket(): the kernel's seccomp filter
    ]
    if pool.isolation.get("network_namespace"):
        assert calls[4].value == "lo"  # a namespace of its own, where even raw syscalls find no network
    _assert_serving(pool)


def test_secrets_of_the_parent_are_not_visible(monkeypatch: pytest.MonkeyPatch, fresh_children: set[int]) -> None:
    secrets = {
        "AWS_SECRET_ACCESS_KEY": "aws-secret-8c1f",
        "OPENAI_API_KEY": "sk-secret-29ad",
        "GITHUB_TOKEN": "ghp-secret-77e0",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    source = """
    import json, os

    def grade(sample, item):
        found = [s for s in item if s in repr(dict(os.environ)) or s in open("/proc/self/environ").read()]
        try:
            open(f"/proc/{os.getppid()}/environ", "rb").read()
            parent = "read"
        except OSError as e:
            parent = type(e).__name__
        home, tmp = os.environ["HOME"], os.environ["TMPDIR"]
        return json.dumps({"env": sorted(os.environ), "found": found, "parent": parent, "home": home, "tmp": tmp,
                           "cwd": os.getcwd(), "exists": os.path.isdir(home)})
    """
    before = set(_worker_dirs())
    with SandboxPool(workers=1) as pool:
        calls = _grade(pool, source, [list(secrets.values())])
        seen = json.loads(calls[0].value)
        assert seen["env"] == [
            "HOME",
            "LANG",
            "MKL_NUM_THREADS",
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "PATH",
            "TMPDIR",
        ]
        assert seen["found"] == []
        assert seen["parent"] == "PermissionError"
        assert seen["home"] == seen["tmp"] == seen["cwd"] and seen["exists"]
        assert set(_worker_dirs()) - before
    assert set(_worker_dirs()) - before == set()  # the worker's temp directory on the host went with it


def test_crashes_fail_one_sample_and_the_worker_is_replaced(fresh_children: set[int]) -> None:
    source = """
    import os, signal

    def grade(sample, item):
        if item == "exit":
            os._exit(3)
        if item == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        return f"{WORKER} {os.environ['TMPDIR']}"
    """
    source = "import os\nWORKER = os.urandom(8).hex()\n" + textwrap.dedent(source)
    before = set(_worker_dirs())
    with SandboxPool(workers=1) as pool:
        calls = _grade(pool, source, ["ok", "exit", "ok", "segv", "ok"])
        assert _flags(calls) == [None, "python_grader_server_error", None, "python_grader_server_error", None]
        assert [c.error.detail for c in calls if c.error] == ["worker_crashed", "worker_crashed"]
        assert calls[1].error is not None and "exit code 3" in calls[1].error.message
        assert calls[3].error is not None and "SIGSEGV" in calls[3].error.message
        workers = [value.split() for value in _values(calls) if value is not None]
        assert len({worker for worker, _ in workers}) == 3  # a new worker after each crash
        assert len(set(_worker_dirs()) - before) == 1  # the dead workers' temp dirs are gone
        _assert_serving(pool, fresh_children)


def test_output_is_bounded(pool: SandboxPool) -> None:
    source = """
    import os, sys

    def grade(sample, item):
        if item == "print":
            for _ in range(100):
                print("x" * 10**6)
            return 1.0
        if item == "write-and-raise":
            for _ in range(100):
                os.write(2, b"y" * 10**6)
            raise RuntimeError("after 100 MB")
        if item == "big-result":
            return "z" * (2 * 1024**2)
        return 2.0
    """
    calls = _grade(pool, source, ["print", "write-and-raise", "big-result", "fine"])
    assert _flags(calls) == [None, "python_grader_runtime_error", "python_grader_server_error", None]
    assert _values(calls) == [1.0, None, None, 2.0]
    raised, big = calls[1].error, calls[2].error
    assert raised is not None and raised.message == "RuntimeError: after 100 MB"
    assert raised.detail is not None and len(raised.detail) <= MAX_DETAIL_CHARS
    assert "yyyy" in raised.detail and raised.detail.endswith("RuntimeError: after 100 MB\n")
    assert big is not None and big.detail == "output_limit"
    _assert_serving(pool)


TAMPER = """
import builtins, os, signal, sys

class Liar:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__

def grade(sample, item):
    if item == "builtins":
        builtins.len = lambda x: -1
    elif item == "liar":
        builtins.len = Liar()
    elif item == "modules":
        sys.modules.clear()
    elif item == "signals":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    elif item == "alarm":
        signal.alarm(1)
    elif item == "stdio":
        sys.stdout = sys.stderr = None
    elif item == "env":
        os.environ["LEAKED"] = "1"
        os.chdir("/")
    return "tampered"
"""

CHECK = """
import json, os, sys

def grade(sample, item):
    state = [len("abc"), "json" in sys.modules, os.environ.get("LEAKED"), os.getcwd() == os.environ["TMPDIR"]]
    print("still printing")
    return f"{WORKER} {json.dumps(state)}"
"""
CHECK = "import os\nWORKER = os.urandom(8).hex()\n" + CHECK


def test_tampering_with_the_interpreter_does_not_reach_the_next_grader(fresh_children: set[int]) -> None:
    steps = ["builtins", "liar", "modules", "signals", "alarm", "stdio", "env"]
    with SandboxPool(workers=1) as pool:
        checks = [_grade(pool, CHECK, ["check"])]
        for step in steps:
            assert _values(_grade(pool, TAMPER, [step])) == ["tampered"]
            checks.append(_grade(pool, CHECK, ["check"]))
        assert [_flags(calls) for calls in checks] == [[None]] * (len(steps) + 1)
        seen = [value.split(" ", 1) for calls in checks for value in _values(calls)]
        assert all(json.loads(state) == [3, True, None, True] for _, state in seen)  # the next grader sees no change
        # A worker never serves two graders: each check ran in a worker of its own.
        assert len({worker for worker, _ in seen}) == len(checks)
        _assert_serving(pool, fresh_children)


def test_a_worker_serves_one_grader_of_one_owner(pool: SandboxPool) -> None:
    source = "import os\nWORKER = os.urandom(8).hex()\ndef grade(sample, item):\n    return WORKER\n"
    grader = PythonGrader(name="t", source=source)

    async def as_owner(owner: str) -> set[str]:
        return {c.value for c in await pool.run(grader, [{}] * 4, [0] * 4, owner=owner)}

    first, again, other = (asyncio.run(as_owner(owner)) for owner in ("job-1", "job-1", "job-2"))
    assert first & again  # the same grader of the same owner finds its warm worker
    assert not (first | again) & other  # another owner's run of the same source never shares a worker


def test_the_temp_directory_is_emptied_between_calls(pool: SandboxPool) -> None:
    source = """
    import json, os

    def grade(sample, item):
        tmp = os.environ["TMPDIR"]
        found = sorted(os.listdir(tmp))
        open(os.path.join(tmp, f"left-by-{item}"), "w").write("x")
        os.makedirs(os.path.join(tmp, "dir", "sub"), exist_ok=True)
        return json.dumps(found)
    """
    with SandboxPool(workers=1) as one:
        assert _values(_grade(one, source, [1, 2, 3])) == ["[]", "[]", "[]"]


# ------------------------------------------------------------------------------------------ life cycle


def test_close_ends_everything(fresh_children: set[int]) -> None:
    source = "import time, os\ndef grade(sample, item):\n    time.sleep(item)\n    return os.environ['TMPDIR']\n"
    before = set(_worker_dirs())
    pool = SandboxPool(workers=1)
    assert pool.pids == []  # nothing starts before the first run
    _grade(pool, source, [0])
    assert len(set(_worker_dirs()) - before) == 1 and len(pool.pids) >= 1

    async def close_while_grading() -> list[Call]:
        task = asyncio.create_task(pool.run(PythonGrader(name="t", source=source), [{}] * 3, [30, 30, 30]))
        await asyncio.sleep(0.5)
        await pool.aclose()
        return await task

    calls = asyncio.run(close_while_grading())
    assert [c.error.detail for c in calls if c.error] == ["pool_closed"] * 3
    assert pool.closed and pool.pids == [] and set(_worker_dirs()) - before == set()
    with pytest.raises(RuntimeError, match="closed"):
        _grade(pool, source, [0])
    pool.close()  # idempotent


def test_a_cancelled_run_leaves_the_pool_serving(fresh_children: set[int]) -> None:
    source = "import time\ndef grade(sample, item):\n    time.sleep(item)\n    return 1.0\n"

    async def cancel() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(PythonGrader(name="t", source=source), [{}] * 4, [0.3] * 4), 0.1)

    with SandboxPool(workers=1) as pool:
        asyncio.run(cancel())
        _assert_serving(pool, fresh_children)


def test_a_worker_that_cannot_start_fails_its_samples(fresh_children: set[int]) -> None:
    with SandboxPool(workers=1, memory_bytes=8 * 1024**2) as pool:  # less than an interpreter needs
        calls = _grade(pool, "def grade(sample, item):\n    return 1.0\n", [1, 2])
        assert _flags(calls) == ["python_grader_server_error"] * 2
        assert [c.error.detail for c in calls if c.error] == ["worker_start_failed"] * 2
        assert calls[0].error is not None and "leaves no room" in calls[0].error.message


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="workers"):
        SandboxPool(workers=0)
    with pytest.raises(ValueError, match="timeout"):
        SandboxPool(timeout=0)
    with SandboxPool(workers=1) as pool:
        assert asyncio.run(pool.run(PythonGrader(name="t", source=ODD_RESULTS), [], [])) == []
        assert pool.pids == []


def test_packages_under_the_system_temp_directory_stay_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    # A checkout or venv under /tmp (as a CI clone may be): the worker's private temp directory must not hide it.
    with tempfile.TemporaryDirectory() as place:
        Path(place, "gk_temp_module.py").write_text("VALUE = 4.5\n")
        monkeypatch.setenv("PYTHONPATH", place)
        monkeypatch.syspath_prepend(place)
        with SandboxPool(workers=1) as pool:
            source = "import gk_temp_module\ndef grade(sample, item):\n    return gk_temp_module.VALUE\n"
            assert _values(_grade(pool, source, [0])) == [4.5]


def test_a_call_that_leaves_a_thread_running_retires_its_worker() -> None:
    source = """
    import os, threading, time
    WORKER = os.urandom(8).hex()

    def grade(sample, item):
        if item == "linger":
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        return WORKER
    """
    with SandboxPool(workers=1) as one:
        plain = _values(_grade(one, source, ["a", "b"]))
        lingered = _values(_grade(one, source, ["linger", "after"]))
    assert plain[0] == plain[1]  # a warm worker serves its grader's next sample
    assert lingered[0] == plain[1] and lingered[1] != lingered[0]  # the thread's call was that worker's last


def test_a_dead_pools_temp_directories_are_removed_at_the_next_start() -> None:
    parent = os.path.join(tempfile.gettempdir(), f"gradekit-sandboxes-{os.getuid()}")
    os.makedirs(parent, mode=0o700, exist_ok=True)
    ended = subprocess.Popen(["true"])  # a process that has ended: its pid names a dead pool
    ended.wait()
    dead = tempfile.mkdtemp(prefix=f"{ended.pid}-", dir=parent)
    Path(dead, "left.txt").write_text("x")
    alive = tempfile.mkdtemp(prefix=f"{os.getppid()}-", dir=parent)  # a live process's: not ours to remove
    try:
        with SandboxPool(workers=1) as pool:
            assert _values(_grade(pool, "def grade(sample, item):\n    return 1.0\n", [0])) == [1.0]
        assert not os.path.exists(dead) and os.path.isdir(alive)
    finally:
        shutil.rmtree(dead, ignore_errors=True)
        shutil.rmtree(alive, ignore_errors=True)
