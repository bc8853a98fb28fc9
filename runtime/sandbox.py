"""Sandboxed `python` graders: `SandboxPool`, a warm pool of locked-down worker processes.

`SandboxPool` implements `gradekit.graders.PythonExecutor`, so `Env(python=SandboxPool())` runs every
`python` grader's `grade(sample, item)` outside this process, with OpenAI's python grader limits.

Process model. Each worker is `python -I -B -X utf8 -c <worker code>`, started fresh from this
interpreter with a scrubbed environment (`PATH`, `LANG`, `HOME` and `TMPDIR` pointing at a private temp
directory, one-thread BLAS/OpenMP settings, plus the pool's `extra_env`) in its own session. The worker
code is the `_worker_*` functions below, sent as source, so a worker imports only the standard library
and starts in tens of milliseconds. On Linux it then enters new namespaces and forks twice (see
`_worker_isolate`): user code runs as PID 2 of its own PID namespace, under two processes that only wait.
One thread of this process drives each worker over pipes: requests on the worker's stdin, replies on its
stdout, each frame a 4-byte big-endian length and a JSON object, every reply frame carrying the random id
of its request; whatever user code writes to stdout or stderr (both are the worker's stderr pipe) is
drained by that thread into a bounded buffer. A worker serves one grader (source and owner) for its
whole life: it compiles the source once and then grades sample after sample, emptying its temp directory
after each. The samples of a batch are shared out to the workers as each becomes free, each preferring
samples of its own grader. Nothing starts before the first `run`; `close()` kills and reaps every worker
and deletes their temp directories.

Failures, one sample at a time (samples before and after it, in the same batch too, are graded normally):

| what happened                                             | flag                          | detail / type         |
|-----------------------------------------------------------|-------------------------------|-----------------------|
| `grade()` raised (`RecursionError`, `SystemExit` too)     | `python_grader_runtime_error` | captured output + tb  |
| the source does not compile, raises, or has no `grade`    | `python_grader_runtime_error` | traceback             |
| the sample or item is not JSON-serializable               | `python_grader_runtime_error` | the reason            |
| wall time over `timeout` (worker replaced)                | `unresponsive_reward_error`   | -                     |
| CPU time over `cpu_time`: `SIGXCPU` (worker replaced)     | `python_grader_server_error`  | `cpu_time_limit`      |
| `MemoryError`, or a death close to the memory limit       | `python_grader_server_error`  | `memory_limit`        |
| the result is larger than `max_output_bytes`              | `python_grader_server_error`  | `output_limit`        |
| `os._exit`, a fatal signal, a broken protocol (replaced)  | `python_grader_server_error`  | `worker_crashed`      |
| a worker could not start                                  | `python_grader_server_error`  | `worker_start_failed` |
| `close()` came first                                      | `python_grader_server_error`  | `pool_closed`         |

A source whose loading times out, crashes or hits a limit gets that same error for its later samples, for
the pool's lifetime, without being tried again. Results are not judged here: `None`, booleans, numbers,
strings and NaN/inf come back as they are, anything else as a `ForeignValue` (its type name and `repr`);
the caller reads `None` as "does not apply" (no reward, docs/no-reward.md), and `coerce_reward` makes all but
finite numbers a `python_grader_runtime_error`.

How each limit is enforced (on Linux; elsewhere only the parent-side parts, rlimits and the audit hook):

- Wall time: the parent's `poll` deadline, then SIGKILL. Nothing escapes it.
- CPU time: an `RLIMIT_CPU` soft limit, set by the parent (`prlimit`) before each call to the worker's CPU
  time so far plus `cpu_time`, in whole seconds; `SIGXCPU` ends the worker. User code that ignores
  `SIGXCPU` runs on until the wall timeout.
- Memory: `RLIMIT_AS` (address space, which is more than resident memory).
- Output: user stdout and stderr go to a pipe the parent drains, keeping the last `max_output_bytes` of
  each call (shown before the traceback of a runtime error), so printing 100 MB costs time, not memory. A
  reply over `max_output_bytes` is refused.
- Files: every mount is read-only; the temp directory (and `/dev/shm`) is a private tmpfs of `tmp_bytes`,
  or, where the uid cannot be mapped (root without capabilities), the worker's own directory on disk;
  `RLIMIT_FSIZE` bounds one file in both.
- Processes, network, secrets: see the README's sandbox section for the threat model. The worker's own
  PID, mount, network, IPC and UTS namespaces (inside a user namespace unless it has `CAP_SYS_ADMIN`) with
  a private `/proc`; every capability dropped; no new privileges; a seccomp filter
  (`_worker_seccomp_program`) that refuses new processes, exec, namespaces, mounts, sockets, tracing,
  rlimit changes, and signals or async-I/O ownership aimed at another process; a syscall of another ABI
  kills the worker.

The audit hook refuses the same things in Python (plus other processes' `/proc` entries) with a clear
message; it is a guard against honest mistakes, not a security boundary: native code gets around it, the
kernel-level parts hold. `SandboxPool.isolation` says which are active.

User code may break interpreter state that the worker's own code relies on: after each call the worker
puts back `builtins`, stdio, the recursion limit, the environment and the working directory (a closed
stdio stream, a deleted working directory or a thread left running retires the worker). A grader's own
later samples see what else it changed, as in any long-lived process; another grader never does.

Packages: a worker imports from the same site-packages as this interpreter (and the directories of
`PYTHONPATH`), so every installed package of OpenAI's python grader image is importable;
`available_packages()` says which are. With gradekit's `similarity` and `embeddings` extras (all in
`dev`) that is numpy, scipy, sympy, scikit-learn, rapidfuzz, rouge-score, jsonschema, pydantic, pyyaml
and nltk; pandas, deepdiff, sqlparse, rdkit, scikit-bio and ast-grep-py are not gradekit dependencies.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import glob
import hashlib
import importlib.util
import inspect
import json
import math
import os
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from gradekit.graders import Call, GradingError, PythonGrader
from gradekit.graders.errors import MAX_DETAIL_CHARS, truncate_detail

__all__ = ["GRADER_IMAGE_PACKAGES", "ForeignValue", "OwnedPool", "SandboxPool", "available_packages"]

#: The packages of OpenAI's python grader image: import name -> distribution name.
GRADER_IMAGE_PACKAGES: Final[dict[str, str]] = {
    "numpy": "numpy",
    "scipy": "scipy",
    "sympy": "sympy",
    "pandas": "pandas",
    "rapidfuzz": "rapidfuzz",
    "sklearn": "scikit-learn",
    "rouge_score": "rouge-score",
    "deepdiff": "deepdiff",
    "jsonschema": "jsonschema",
    "pydantic": "pydantic",
    "yaml": "pyyaml",
    "nltk": "nltk",
    "sqlparse": "sqlparse",
    "rdkit": "rdkit",
    "skbio": "scikit-bio",
    "ast_grep_py": "ast-grep-py",
}


def available_packages() -> dict[str, bool]:
    """Which packages of OpenAI's python grader image sandboxed graders can import here, by distribution name."""
    return {dist: importlib.util.find_spec(name) is not None for name, dist in GRADER_IMAGE_PACKAGES.items()}


# --------------------------------------------------------------------------------------------- worker side
# These functions run inside the worker: their source is the program given to `python -c`, so they use only
# the standard library, import it locally, and call nothing else of this module but each other.


def _worker_main() -> None:
    """A worker process: lock itself down, then grade one grader's requests until its pipe closes."""
    import _thread
    import json
    import linecache
    import os
    import resource
    import shutil
    import struct
    import sys
    import traceback
    import types

    config = json.loads(sys.argv[1])
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)  # user stdout joins stderr, the parent's bounded output pipe; the protocol has private fds
    for entry in config["path"]:
        if entry not in sys.path:
            sys.path.append(entry)
    isolation, outer_pid, scratch = _worker_isolate(config, (proto_in, proto_out))
    touched: set[str] = set()
    repair = _worker_guard(touched)
    max_output, max_detail = config["max_output"], config["max_detail"]

    # What runs between user code and `repair` is bound here, out of reach of changes to builtins or modules.
    header = struct.Struct(">I")
    encode = json.JSONEncoder(separators=(",", ":")).encode
    decode = json.JSONDecoder().decode
    read, write, exit_now, scandir, unlink, rmtree = os.read, os.write, os._exit, os.scandir, os.unlink, shutil.rmtree
    stat = os.stat
    thread_count = _thread._count  # Python threads other than the main one that are still running
    rusage, rusage_self = resource.getrusage, resource.RUSAGE_SELF
    format_exception, lines = traceback.format_exception, linecache.cache
    new_module, modules, coroutine = types.ModuleType, sys.modules, types.CoroutineType
    instance_of, encode_value, to_str, length = isinstance, _worker_encode, str, len
    memory_error, any_exception = MemoryError, BaseException
    stdout, stderr = sys.stdout, sys.stderr
    inbuf = bytearray()
    grader: tuple[Any, ...] | None = None
    broken = False

    def cpu() -> float:
        usage = rusage(rusage_self)
        return usage.ru_utime + usage.ru_stime

    def vm_peak() -> int:
        # Peak address space in bytes, sent with a crash: the parent cannot read it once this process exits.
        try:
            with open("/proc/self/status", "rb") as status:
                for line in status:
                    if line.startswith(b"VmPeak:"):
                        return int(line.split()[1]) * 1024
        except any_exception:
            pass
        return 0

    def threads_left() -> bool:
        # A thread user code left running could race the clean-up or answer for this worker: retire instead.
        return thread_count() > 0

    # A tmpfs directory's size counts its entries, so one stat tells an untouched one (listing costs ~10 syscalls).
    empty_size = {d: os.stat(d).st_size for d in scratch} if isolation["bounded_tmp"] else {}

    def empty_scratch() -> None:
        # Nothing one call writes is seen by the next, even of the same grader.
        for directory in scratch:
            try:
                if directory in empty_size and stat(directory).st_size == empty_size[directory]:
                    continue
                for entry in scandir(directory):
                    if entry.is_dir(follow_symlinks=False):
                        rmtree(entry.path, ignore_errors=True)
                    else:
                        unlink(entry.path)
            except OSError:
                pass

    def send(message: dict[str, Any] | str) -> None:
        data = (message if instance_of(message, str) else encode(message)).encode("ascii")
        view = memoryview(header.pack(length(data)) + data)
        while view:
            view = view[write(proto_out, view) :]

    def receive() -> bytes | None:
        while True:
            if length(inbuf) >= 4:
                (size,) = header.unpack_from(inbuf)
                if length(inbuf) >= 4 + size:
                    body = bytes(inbuf[4 : 4 + size])
                    del inbuf[: 4 + size]
                    return body
            chunk = read(proto_in, 1 << 16)
            if not chunk:
                return None
            inbuf.extend(chunk)

    def run_user(fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        nonlocal broken
        try:
            value = fn(*args)
            if instance_of(value, coroutine):
                import asyncio

                value = asyncio.run(value)
        except memory_error:
            raise  # nothing to repair: the worker retires
        except any_exception as exc:
            broken = repair() or broken
            return False, exc
        broken = repair() or broken  # first thing after user code: the worker's own code needs builtins
        return True, value

    def describe(exc: BaseException) -> str:
        try:
            text = to_str(exc)
        except any_exception:
            text = "<str() of the exception failed>"
        return f"{type(exc).__name__}: {text}"[:1000]

    def details(exc: BaseException) -> str:
        try:
            tb = exc.__traceback__
            text = "".join(format_exception(type(exc), exc, tb.tb_next if tb is not None else None))
        except any_exception:
            text = describe(exc)
        return text if length(text) <= max_detail else "..." + text[-(max_detail - 3) :]

    def load(source: str, name: str) -> tuple[Any, ...]:
        module = new_module("gradekit_python_grader")
        filename = f"<python grader {name}>"
        lines[filename] = (length(source), None, source.splitlines(True), filename)
        modules[module.__name__] = module

        def execute() -> None:
            exec(compile(source, filename, "exec"), module.__dict__)

        ok, error = run_user(execute)
        if not ok:
            return "error", f"grader source failed to load: {describe(error)}", details(error)
        grade = module.__dict__.get("grade")
        if not callable(grade):
            message = "grader source failed to load: it defines no grade(sample, item) function"
            return "error", message, message
        return "ok", grade

    def handle(rid: str, body: bytes) -> tuple[str, bool]:
        nonlocal grader, broken
        broken = False
        request = decode(body[32:].decode("ascii"))
        if grader is None:  # the first request brings the source; this worker serves no other grader
            grader = load(request["src"], request.get("n", "grader"))
            if grader[0] == "ok":
                send({"t": "loaded", "id": rid})
        if grader[0] == "error":
            reply: dict[str, Any] = {"t": "error", "msg": grader[1], "tb": grader[2]}
        else:
            ok, result = run_user(grader[1], request["s"], request["i"])
            if ok:
                reply = {"t": "ok", **encode_value(result)}
            else:
                reply = {"t": "error", "msg": describe(result), "tb": details(result)}
            del result
        for stream in (stdout, stderr):
            try:
                stream.flush()
            except any_exception:  # its fd was closed or replaced: the worker's output is broken
                broken = True
        broken = threads_left() or broken
        empty_scratch()
        reply["cpu"], reply["id"] = cpu(), rid
        if broken:
            reply["retire"] = True
        data = encode(reply)
        if length(data) > max_output:
            data = encode({"t": "limit", "type": "output_limit", "cpu": reply["cpu"], "id": rid, "retire": broken})
        return data, broken

    send({"t": "ready", "pid": outer_pid, "cpu": cpu(), "isolation": isolation})
    sys.addaudithook(_worker_audit_hook(os.getpid(), touched))
    while True:
        body = receive()
        if body is None:
            exit_now(0)
        reply: dict[str, Any] | str | None = None
        rid = body[:32].decode("ascii", "replace")  # the request's id: every frame of the reply carries it
        try:
            reply, retire = handle(rid, body)
        except memory_error:
            retire = True  # the reply is built below, once the exception has let go of the memory
        except any_exception as exc:  # a worker bug, or state broken beyond what `repair` fixes
            reply, retire = {"t": "crash", "msg": describe(exc), "peak": vm_peak(), "id": rid}, True
        send(reply if reply is not None else {"t": "limit", "type": "memory_limit", "id": rid})
        if retire:
            exit_now(0)


def _worker_encode(value: Any) -> dict[str, Any]:
    """A `grade()` result as JSON: `v` for None, bools, numbers and strings; `f` (type name, repr) otherwise."""
    kind = type(value)
    try:
        if value is None or kind is bool:
            return {"v": value}
        if isinstance(value, float):
            return {"v": float.__float__(value)}  # exact float, without calling a subclass's methods
        if isinstance(value, int):
            number = int.__int__(value)
            if number.bit_length() < 14000:  # JSON-able under Python's 4300-digit int/str limit
                return {"v": number}
        elif isinstance(value, str):
            return {"v": str.__str__(value)}
    except Exception:
        pass
    try:
        text = repr(value)
    except BaseException:
        text = f"<{kind.__name__} object>"
    return {"f": [kind.__name__, text[:200]]}


def _worker_isolate(config: dict[str, Any], private_fds: tuple[int, ...]) -> tuple[dict[str, bool], int, list[str]]:
    """Apply rlimits and the kernel's isolation: (what is active, this process's pid outside, scratch dirs).

    With namespaces, only a grandchild of this process returns, in a new PID namespace; this process and
    its child wait and end as it ended. What the kernel refuses is skipped and reported False.
    """
    import os
    import resource
    import signal
    import sys

    keys = ("user_namespace", "pid_namespace", "mount_namespace", "network_namespace", "readonly_filesystem")
    done = dict.fromkeys((*keys, "private_tmp", "bounded_tmp", "capabilities_dropped", "seccomp"), False)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    memory = config["memory"] if hard == resource.RLIM_INFINITY else min(config["memory"], hard)
    if os.path.exists("/proc/self/statm"):
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        if size + 8 * 2**20 > memory:  # fail now, plainly, rather than at some allocation later
            sys.exit(f"memory_bytes={memory} leaves no room: the worker alone takes {size} bytes")
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["tmp_bytes"], config["tmp_bytes"]))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG instead of ending the worker
    tmpdir = os.environ.get("TMPDIR", os.getcwd())
    if not sys.platform.startswith("linux"):
        return done, os.getpid(), [tmpdir]

    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the parent's driving thread
    if os.getppid() != config["parent"]:
        os._exit(0)

    # Namespaces: mount, PID, network, IPC, UTS; as root with CAP_SYS_ADMIN directly, else in a new user
    # namespace, mapping our own uid when the kernel lets us (root without CAP_SETFCAP leaves it unmapped).
    namespaces = 0x00020000 | 0x20000000 | 0x40000000 | 0x08000000 | 0x04000000
    uid, gid, mapped = os.getuid(), os.getgid(), True
    entered = libc.unshare(namespaces) == 0
    if not entered and libc.unshare(namespaces | 0x10000000) == 0:  # CLONE_NEWUSER
        entered = done["user_namespace"] = True

        def write(path: str, text: str) -> bool:
            try:
                with open(path, "w") as f:
                    f.write(text)
                return True
            except OSError:
                return False

        write("/proc/self/setgroups", "deny")
        write("/proc/self/gid_map", f"{gid} {gid} 1")
        mapped = write("/proc/self/uid_map", f"{uid} {uid} 1")
    if not entered:
        return done, os.getpid(), [tmpdir]

    # Three processes: this one waits outside the namespaces; its child, PID 1 inside, waits too (the
    # kernel shields a namespace's PID 1 from signals it has no handler for, SIGXCPU and SIGSEGV among
    # them); the grandchild runs user code. Each waiter holds no pipe of the protocol, so when the pool
    # closes its ends the grandchild exits and the others follow; each waiter ends as the grandchild did.
    status_read, status_write = os.pipe()

    def wait_for(child: int, report: bool) -> None:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (*private_fds, status_write if not report else status_read):
            os.close(fd)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _, status = os.waitpid(child, 0)
        if report:  # PID 1 cannot end by a signal it sends itself: it tells the outer waiter instead
            os.write(status_write, status.to_bytes(4, "big"))
            os._exit(0)
        told = os.read(status_read, 4)
        status = int.from_bytes(told, "big") if len(told) == 4 else status
        if os.WIFSIGNALED(status):
            signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
            os.kill(os.getpid(), os.WTERMSIG(status))
        os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)

    child = os.fork()
    if child:
        wait_for(child, report=False)
    prctl(1, signal.SIGKILL, 0, 0, 0)  # die with the outer waiter, which the pool kills if it must
    child = os.fork()
    if child:
        wait_for(child, report=True)
    prctl(1, signal.SIGKILL, 0, 0, 0)
    os.close(status_read)
    os.close(status_write)
    outer = os.getpid()
    with open("/proc/self/status") as status:  # the server's /proc, still: our pid as the pool knows it
        for line in status:
            if line.startswith("NSpid:"):
                outer = int(line.split()[1])
    done["pid_namespace"] = done["mount_namespace"] = done["network_namespace"] = True

    class MountAttr(ctypes.Structure):
        _fields_ = [
            ("set", ctypes.c_uint64),
            ("clear", ctypes.c_uint64),
            ("propagation", ctypes.c_uint64),
            ("ns", ctypes.c_uint64),
        ]

    def set_mount(path: str, set_: int, clear: int, recursive: bool, propagation: int = 0) -> bool:
        attr = MountAttr(set_, clear, propagation, 0)
        flags = 0x8000 if recursive else 0  # AT_RECURSIVE
        return libc.syscall(442, -100, path.encode(), flags, ctypes.byref(attr), ctypes.sizeof(attr)) == 0

    def mount(source: str, target: str, kind: str | None, flags: int, data: str | None) -> bool:
        encoded = data.encode() if data else None
        return libc.mount(source.encode(), target.encode(), kind.encode() if kind else None, flags, encoded) == 0

    nosuid, nodev, noexec, bind = 2, 4, 8, 4096
    set_mount("/", 0, 0, True, 1 << 18)  # MS_PRIVATE: nothing mounted here reaches the server's view
    root, scratch = config["tmp_root"], []  # the parent of every worker's temp directory: ours goes over it
    if mapped:  # a private, sized tmpfs over it (and /dev/shm): other graders' files are not there
        options = f"size={config['tmp_bytes']},mode=0700"
        scratch = [
            d for d in (root, "/dev/shm") if os.path.isdir(d) and mount("tmpfs", d, "tmpfs", nosuid | nodev, options)
        ]
    elif mount(tmpdir, root, None, bind, None):  # unmapped, a tmpfs is not writable: our own directory instead
        scratch = [root]
    if not mount("proc", "/proc", "proc", nosuid | nodev | noexec, None):
        mount("tmpfs", "/proc", "tmpfs", 1 | nosuid | nodev | noexec, "size=4096")  # hide the server's /proc
    done["readonly_filesystem"] = set_mount("/", 1 | nosuid, 0, True)  # MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
    done["private_tmp"] = bool(scratch) and all(set_mount(d, 0, 1, False) for d in scratch)
    done["bounded_tmp"] = done["private_tmp"] and mapped
    if not done["private_tmp"]:
        scratch = [tmpdir]
    os.environ["TMPDIR"] = os.environ["HOME"] = scratch[0]
    os.chdir(scratch[0])

    for capability in range(64):  # the bounding set first, then every capability this process has
        prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP
    prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
    prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: other processes cannot read our memory

    class CapHeader(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    no_caps = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable} words, all zero
    done["capabilities_dropped"] = libc.capset(ctypes.byref(CapHeader(0x20080522, 0)), no_caps) == 0

    program = _worker_seccomp_program(os.uname().machine, os.getpid())
    if program is not None and prctl(38, 1, 0, 0, 0) == 0:  # PR_SET_NO_NEW_PRIVS, required for seccomp

        class FilterProgram(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        code = ctypes.create_string_buffer(program, len(program))
        fprog = FilterProgram(len(program) // 8, ctypes.cast(code, ctypes.c_void_p))
        done["seccomp"] = prctl(22, 2, ctypes.addressof(fprog), 0, 0) == 0  # PR_SET_SECCOMP, MODE_FILTER
    return done, outer, scratch


def _worker_seccomp_program(machine: str, pid: int) -> bytes | None:
    """A seccomp-BPF filter: no processes, exec, namespaces, mounts, sockets, tracing, limit changes, or
    signals and async-I/O ownership aimed at another process."""
    import errno
    import struct

    # name: (x86_64 number, aarch64 number), from the kernel's unistd headers
    numbers = {
        "execve": (59, 221),
        "execveat": (322, 281),
        "setrlimit": (160, 164),
        "unshare": (272, 97),
        "setns": (308, 268),
        "mount": (165, 40),
        "umount2": (166, 39),
        "chroot": (161, 51),
        "pivot_root": (155, 41),
        "open_tree": (428, 428),
        "move_mount": (429, 429),
        "fsopen": (430, 430),
        "fsconfig": (431, 431),
        "fsmount": (432, 432),
        "fspick": (433, 433),
        "mount_setattr": (442, 442),
        "name_to_handle_at": (303, 264),
        "open_by_handle_at": (304, 265),
        "ptrace": (101, 117),
        "process_vm_readv": (310, 270),
        "process_vm_writev": (311, 271),
        "process_madvise": (440, 440),
        "process_mrelease": (448, 448),
        "kcmp": (312, 272),
        "pidfd_open": (434, 434),
        "pidfd_getfd": (438, 438),
        "pidfd_send_signal": (424, 424),
        "tkill": (200, 130),
        "rt_sigqueueinfo": (129, 138),
        "rt_tgsigqueueinfo": (297, 240),
        "bpf": (321, 280),
        "perf_event_open": (298, 241),
        "io_uring_setup": (425, 425),
        "userfaultfd": (323, 282),
        "keyctl": (250, 219),
        "add_key": (248, 217),
        "request_key": (249, 218),
        "socket": (41, 198),  # socketpair() stays: asyncio's event loop needs it
        "connect": (42, 203),
        "bind": (49, 200),
        "listen": (50, 201),
        "accept": (43, 202),
        "accept4": (288, 242),
        "sendmsg": (46, 211),
        "sendmmsg": (307, 269),
        # checked below, by their arguments
        "clone": (56, 220),
        "clone3": (435, 435),
        "prlimit64": (302, 261),
        "kill": (62, 129),
        "tgkill": (234, 131),
        "fcntl": (72, 25),
        "ioctl": (16, 29),
        "sendto": (44, 206),
    }
    if machine == "x86_64":
        arch, column, refused = 0xC000003E, 0, [57, 58]  # fork, vfork
    elif machine == "aarch64":
        arch, column, refused = 0xC00000B7, 1, []
    else:
        return None
    nr = {name: pair[column] for name, pair in numbers.items()}
    checked = ("clone", "clone3", "prlimit64", "kill", "tgkill", "fcntl", "ioctl", "sendto")
    refused += [number for name, number in nr.items() if name not in checked]
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ/JGE/JSET|K, BPF_RET|K
    allow, kill_process = 0x7FFF0000, 0x80000000  # SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS
    eperm, enosys = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS  # SECCOMP_RET_ERRNO

    def arg(index: int, high: bool = False) -> int:  # offset in struct seccomp_data (little-endian 64-bit args)
        return 16 + 8 * index + (4 if high else 0)

    # (code, jump if true, jump if false, k): a jump is 0 (next instruction) or a label.
    program: list[tuple[int, int | str, int | str, int]] = [(ld, 0, 0, 4), (jeq, 0, "die", arch), (ld, 0, 0, 0)]
    if machine == "x86_64":
        program.append((jge, "eperm", 0, 0x40000000))  # the x32 ABI
    program += [(jeq, "eperm", 0, number) for number in refused]
    program.append((jeq, "enosys", 0, nr["clone3"]))  # glibc then falls back to clone(), whose flags can be checked
    program += [(jeq, name, 0, nr[name]) for name in checked if name != "clone3"]
    program.append((ret, 0, 0, allow))
    labels: dict[str, int] = {}

    def block(name: str, *instructions: tuple[int, int | str, int | str, int]) -> None:
        assert name not in labels, name
        labels[name] = len(program)
        program.extend(instructions)

    def one_of(values: tuple[int, ...], match: str, other: str) -> list[tuple[int, int | str, int | str, int]]:
        last = len(values) - 1
        return [(jeq, match, other if i == last else 0, v & 0xFFFFFFFF) for i, v in enumerate(values)]

    block("clone", (ld, 0, 0, arg(0)), (jset, "allow", "eperm", 0x00010000))  # CLONE_THREAD: a thread only
    zero = ((jeq, 0, "eperm", 0),)
    block("prlimit64", (ld, 0, 0, arg(2)), *zero, (ld, 0, 0, arg(2, True)), (jeq, "allow", "eperm", 0))  # no new limit
    block("sendto", (ld, 0, 0, arg(4)), *zero, (ld, 0, 0, arg(4, True)), (jeq, "allow", "eperm", 0))  # no address
    block("kill", (ld, 0, 0, arg(0)), *one_of((pid, 0, -pid), "allow", "eperm"))
    block("tgkill", (ld, 0, 0, arg(0)), *one_of((pid,), "allow", "eperm"))
    # F_SETOWN, F_SETSIG, F_SETOWN_EX; FIOSETOWN, SIOCSPGRP, TIOCSTI: signals or input sent elsewhere
    block("fcntl", (ld, 0, 0, arg(1)), *one_of((8, 10, 15), "eperm", "allow"))
    block("ioctl", (ld, 0, 0, arg(1)), *one_of((0x8901, 0x8902, 0x5412), "eperm", "allow"))
    for name, value in (("allow", allow), ("eperm", eperm), ("enosys", enosys), ("die", kill_process)):
        block(name, (ret, 0, 0, value))
    out = bytearray()
    for i, (code, true, false, k) in enumerate(program):
        jt = labels[true] - i - 1 if isinstance(true, str) else true
        jf = labels[false] - i - 1 if isinstance(false, str) else false
        out += struct.pack("=HBBI", code, jt, jf, k)  # struct.error past a 255-instruction jump: caught in tests
    return bytes(out)


def _worker_audit_hook(pid: int, touched: set[str]) -> Callable[[str, tuple[Any, ...]], None]:
    """An audit hook against honest mistakes: new processes, network access, rlimits, other processes' /proc."""
    import os

    realpath, fsdecode, own = os.path.realpath, os.fsdecode, str(pid)
    symbols = frozenset(
        (
            *("fork", "vfork", "_Fork", "__fork", "clone", "clone3", "daemon", "forkpty", "system", "popen"),
            *("execve", "execv", "execvp", "execvpe", "execl", "execlp", "execle", "fexecve", "execveat"),
            *("posix_spawn", "posix_spawnp", "syscall", "setrlimit", "setrlimit64", "prlimit", "prlimit64"),
            *("unshare", "setns", "ptrace", "kill", "killpg", "tgkill", "capset", "prctl", "seccomp"),
            *("socket", "connect", "bind", "sendto", "getaddrinfo", "gethostbyname", "gethostbyaddr"),
        )
    )

    def deny(event: str, args: tuple[Any, ...]) -> None:
        raise PermissionError(f"{event} is not allowed in the grader sandbox")

    def new_socket(event: str, args: tuple[Any, ...]) -> None:
        if args[1] != 1:  # AF_UNIX only: socketpair() for asyncio's event loop
            deny(event, args)

    def send_message(event: str, args: tuple[Any, ...]) -> None:
        if args[1] is not None:
            deny(event, args)

    def kill(event: str, args: tuple[Any, ...]) -> None:
        if args[0] not in (pid, 0, -pid):
            deny(event, args)

    def lookup(event: str, args: tuple[Any, ...]) -> None:
        if args[1] in symbols:
            deny(event, args)

    def open_path(event: str, args: tuple[Any, ...]) -> None:
        path = args[0]
        if isinstance(path, bytes):
            path = fsdecode(path)
        if isinstance(path, str):
            parts = realpath(path).split("/")
            if parts[1:2] == ["proc"] and (
                len(parts) == 2 or (parts[2].isdigit() and (parts[2] != own or "mem" in parts[3:]))
            ):
                deny(event, args)

    def environ(event: str, args: tuple[Any, ...]) -> None:
        touched.add("environ")

    handlers: dict[str, Callable[[str, tuple[Any, ...]], None]] = {
        name: deny
        for name in (
            "os.system",
            "os.exec",
            "os.fork",
            "os.forkpty",
            "os.posix_spawn",
            "os.spawn",
            "os.startfile",
            "subprocess.Popen",
            "resource.setrlimit",
            "resource.prlimit",
            "socket.bind",
            "socket.connect",
            "socket.sendto",
            "socket.getaddrinfo",
            "socket.gethostbyname",
            "socket.gethostbyaddr",
            "socket.getnameinfo",
            "socket.sethostname",
        )
    }
    handlers |= {
        "socket.__new__": new_socket,
        "socket.sendmsg": send_message,
        "os.kill": kill,
        "os.killpg": kill,
        "ctypes.dlsym": lookup,
        "ctypes.dlsym/handle": lookup,
        "open": open_path,
        "os.putenv": environ,
        "os.unsetenv": environ,
    }
    get = handlers.get

    def hook(event: str, args: tuple[Any, ...]) -> None:
        handler = get(event)
        if handler is not None:
            handler(event, args)

    return hook


def _worker_guard(touched: set[str]) -> Callable[[], bool]:
    """`repair`, run after each call: put back what the worker's own code needs; True if it cannot go on."""
    import builtins
    import gc
    import os
    import sys

    names = builtins.__dict__
    saved_names = dict(names)
    stdio, recursion = (sys.stdin, sys.stdout, sys.stderr), sys.getrecursionlimit()
    environ, saved_environ, cwd, getcwd, chdir = os.environ, dict(os.environ), os.getcwd(), os.getcwd, os.chdir

    def repair() -> bool:
        """Builtins, stdio, the recursion limit, the environment and the working directory as they were."""
        if names != saved_names:
            names.clear()
            names.update(saved_names)
        sys.stdin, sys.stdout, sys.stderr = stdio
        broken = stdio[0].closed or stdio[1].closed or stdio[2].closed
        if sys.getrecursionlimit() != recursion:
            sys.setrecursionlimit(recursion)
        if not gc.isenabled():
            gc.enable()
        if touched:  # os.putenv/os.unsetenv ran (restoring runs them too, hence the clear after)
            environ.clear()
            environ.update(saved_environ)
            touched.clear()
        try:
            if getcwd() != cwd:
                chdir(cwd)
        except OSError:  # the directory was deleted
            broken = True
        return broken

    return repair


# --------------------------------------------------------------------------------------------- parent side

_WORKER_FUNCTIONS = (
    _worker_main,
    _worker_encode,
    _worker_isolate,
    _worker_seccomp_program,
    _worker_audit_hook,
    _worker_guard,
)
_HEADER = struct.Struct(">I")
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
#: Seconds a new worker may take to report ready.
_START_TIMEOUT = 30.0
#: Seconds a worker that closed its pipe (or asked to be replaced) may take to exit before it is killed.
_EXIT_GRACE = 1.0
#: Bytes of a reply allowed beyond `max_output_bytes` (the envelope) before the parent stops reading.
_FRAME_SLACK = 64 * 1024
#: Characters of captured output put in front of a runtime error's traceback.
_OUTPUT_IN_DETAIL = 2000
_BAD_SOURCES_KEPT = 256
#: Workers' temp directories are `<system temp>/gradekit-sandboxes-<uid>/<pool's pid>-...`: a later pool can
#: remove a dead one's, and a worker mounts its own over that parent, hiding every other worker's.
_TMP_PARENT = "gradekit-sandboxes-"


@functools.cache
def _worker_program() -> str:
    try:
        parts = [inspect.getsource(fn) for fn in _WORKER_FUNCTIONS]
    except (OSError, TypeError):  # no source shipped (a frozen build): import the module instead
        return "from gradekit.runtime.sandbox import _worker_main\n_worker_main()\n"
    return "from __future__ import annotations\n\n" + "\n\n".join(parts) + "\n_worker_main()\n"


def _temp_root() -> str:
    """The parent of this user's workers' temp directories, which a worker sees as its private temp directory."""
    root = os.path.join(tempfile.gettempdir(), f"{_TMP_PARENT}{os.getuid()}")
    os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def _remove_stale_tmpdirs(root: str) -> None:
    """Delete the temp directories of workers whose pool process is gone (killed before it could clean up)."""
    for path in glob.glob(os.path.join(root, "*-*")):
        owner = os.path.basename(path).split("-", 1)[0]
        if not owner.isdigit() or int(owner) == os.getpid():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass  # alive, someone else's


def _import_path() -> list[str]:
    """Import path entries the worker adds: this interpreter's site-packages directories and `PYTHONPATH`'s."""
    extra = set(filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    return [
        p
        for p in sys.path
        if p and os.path.isdir(p) and (p in extra or os.path.basename(p) in ("site-packages", "dist-packages"))
    ]


class ForeignValue:
    """A `grade()` result that is not JSON-like, as its type name and (truncated) `repr`.

    Each one is an instance of a subclass named after the original type, so messages read as they would
    in-process ("grader returned list [1, 2], not a number").
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=256)
def _foreign_type(name: str) -> type[ForeignValue]:
    return type(name, (ForeignValue,), {"__slots__": ()})


def _decode_value(reply: Mapping[str, Any]) -> Any:
    if "f" in reply:
        name, text = reply["f"]
        return _foreign_type(str(name))(str(text))
    return reply.get("v")


def _server_error(kind: str, message: str) -> Call:
    return Call(error=GradingError("python_grader_server_error", message, kind))


@dataclass(frozen=True, slots=True)
class _Options:
    timeout: float
    cpu_time: float
    memory_bytes: int
    max_output_bytes: int
    env: dict[str, str]
    argv: tuple[str, ...]
    tmp_root: str


@dataclass(frozen=True, slots=True)
class _Exit:
    """How a worker process ended."""

    code: int | None  # negative: killed by that signal; None: reaped by someone else
    maxrss: int  # peak resident bytes
    killed: bool  # we killed it


@dataclass(eq=False, slots=True)
class _Job:
    """One `run` call: samples are handed to slot threads one index at a time."""

    grader: PythonGrader
    key: str
    samples: Sequence[dict[str, Any]]
    items: Sequence[Any]
    results: list[Call | None]
    future: concurrent.futures.Future[list[Call]]
    pending: int
    next: int = 0
    cancelled: bool = False


class _Worker:
    """One sandbox process, driven by the slot thread that started it (other threads may only `interrupt` it)."""

    def __init__(self, options: _Options) -> None:
        self.options = options
        self.tmpdir = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=options.tmp_root)
        env = {**options.env, "HOME": self.tmpdir, "TMPDIR": self.tmpdir}
        try:
            self.proc = subprocess.Popen(
                options.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=self.tmpdir,
                close_fds=True,
                start_new_session=True,
            )
        except BaseException:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.pid = self.proc.pid
        self.grading_pid = self.pid  # the process that runs user code: a child of `pid` in a PID namespace
        self.lock = threading.Lock()
        self.reaped = False
        self.killed = False
        self.alive = True
        self.key: str | None = None  # the one grader (source and owner) this worker serves, once it has one
        self.loaded = False
        self.isolation: dict[str, bool] = {}
        self.cpu_used = 0.0
        self.cpu_soft: int | None = None
        self.output = bytearray()
        self._inbuf = bytearray()
        self._to_worker = self.proc.stdin.fileno()
        self._from_worker = self.proc.stdout.fileno()
        self._user_output = self.proc.stderr.fileno()
        for fd in (self._to_worker, self._from_worker, self._user_output):
            os.set_blocking(fd, False)
        self._poll = select.poll()
        self._poll.register(self._from_worker, select.POLLIN)
        self._poll.register(self._user_output, select.POLLIN)

    def wait_ready(self) -> str | None:
        """None once the worker reports ready, else why it did not."""
        frame = self._exchange(b"", time.monotonic() + _START_TIMEOUT)
        if isinstance(frame, dict) and frame.get("t") == "ready" and isinstance(frame.get("pid"), int):
            self.isolation = {str(k): bool(v) for k, v in frame.get("isolation", {}).items()}
            self.cpu_used = float(frame.get("cpu", 0.0))
            self.grading_pid = frame["pid"]
            return None
        code = self.stop(_EXIT_GRACE).code
        output = self.output.decode("utf-8", "replace").strip()[-500:]
        status = "did not report ready in time" if frame == "timeout" else f"exited ({code})"
        return f"{status}{': ' + output if output else ''}"

    def grade(self, key: str, grader: PythonGrader, sample: Any, item: Any) -> tuple[Call, bool]:
        """Grade one sample of the grader `key` (this worker's first, or the one it serves): the `Call`, and
        whether loading the source failed."""
        if self.key not in (None, key):
            raise ValueError("a sandbox worker serves one grader only")
        with_source = self.key is None
        request_id = os.urandom(16).hex()  # every frame of the reply must carry it: a forged frame cannot
        message = {"s": sample, "i": item}
        if with_source:
            message |= {"src": grader.source, "n": grader.name}
        try:
            data = _ENCODE(message).encode("ascii")
        except (TypeError, ValueError, RecursionError) as e:
            message = f"sample or item cannot be sent to the sandbox: {type(e).__name__}: {e}"
            return Call(error=GradingError("python_grader_runtime_error", message, message)), False
        self.key = key
        self._limit_cpu()
        self.output.clear()
        deadline = time.monotonic() + self.options.timeout
        request = _HEADER.pack(32 + len(data)) + request_id.encode("ascii") + data
        frame = self._exchange(request, deadline, request_id)
        if isinstance(frame, dict) and frame.get("t") == "loaded":
            self.loaded = True
            frame = self._exchange(b"", deadline, request_id)
        # Died, timed out or hit a limit before reporting the source loaded: the source itself is to blame.
        load_failed = with_source and not self.loaded and _blames_source(frame)
        return self._finish(frame), load_failed

    def _limit_cpu(self) -> None:
        # RLIMIT_CPU counts the worker's whole life, so each call gets "CPU so far + cpu_time" (whole seconds).
        soft = math.ceil(self.cpu_used + self.options.cpu_time)
        if soft == self.cpu_soft or not hasattr(resource, "prlimit"):
            return
        try:
            _, hard = resource.prlimit(self.grading_pid, resource.RLIMIT_CPU)
            if hard != resource.RLIM_INFINITY:
                soft = min(soft, hard)
            resource.prlimit(self.grading_pid, resource.RLIMIT_CPU, (soft, hard))
            self.cpu_soft = soft
        except OSError:
            pass  # the worker is gone: the exchange will tell

    def _near_memory_limit(self, peak: Any) -> bool:
        """True when the worker's peak address space (as it reported it) came within 10% of the memory limit."""
        return isinstance(peak, int) and peak >= 0.9 * self.options.memory_bytes

    def _memory_error(self) -> Call:
        limit = self.options.memory_bytes / 2**20
        return _server_error("memory_limit", f"grade() ran out of memory (limit {limit:g} MiB)")

    def _output_error(self) -> Call:
        return _server_error("output_limit", f"grade()'s result is larger than {self.options.max_output_bytes} bytes")

    def _finish(self, frame: dict[str, Any] | str) -> Call:
        o = self.options
        if isinstance(frame, dict):
            self.cpu_used = float(frame.get("cpu", self.cpu_used))
            kind = frame.get("t")
            if kind == "ok":
                call = Call(value=_decode_value(frame))
            elif kind == "error":
                detail = str(frame.get("tb", ""))
                output = self.output.decode("utf-8", "replace")[-_OUTPUT_IN_DETAIL:]
                if output.strip():
                    detail = f"captured output (end):\n{output}\n\n{detail}"
                message = str(frame.get("msg"))
                call = Call(error=GradingError("python_grader_runtime_error", message, truncate_detail(detail)))
            elif kind == "limit":
                call = self._output_error() if frame.get("type") == "output_limit" else self._memory_error()
            elif self._near_memory_limit(frame.get("peak")):
                # Allocation failures inside C code can surface as odd errors ("SystemError: error return
                # without exception set") rather than MemoryError; the worker's peak address space tells.
                call = self._memory_error()
            else:
                call = _server_error("worker_crashed", f"the sandbox worker failed: {frame.get('msg', kind)!s:.300}")
            if frame.get("retire") or kind not in ("ok", "error", "limit") or frame.get("type") == "memory_limit":
                self.stop(_EXIT_GRACE)
            return call
        if frame == "timeout":
            self.stop(0.0)
            message = f"grade() did not finish within {o.timeout:g} s"
            return Call(error=GradingError("unresponsive_reward_error", message))
        if frame == "output_limit":
            self.stop(0.0)
            return self._output_error()
        end = self.stop(_EXIT_GRACE if frame == "eof" else 0.0)
        return self._classify(end, frame)

    def _classify(self, end: _Exit, frame: str) -> Call:
        o = self.options
        if end.code == -signal.SIGXCPU and not end.killed:
            return _server_error("cpu_time_limit", f"grade() used more than {o.cpu_time:g} s of CPU time")
        output = self.output.decode("utf-8", "replace").strip()[-300:]
        if not end.killed and (end.maxrss >= 0.9 * o.memory_bytes or "MemoryError" in output):
            # A C extension aborting on a failed malloc, or the interpreter itself giving up ("Fatal Python
            # error: ... MemoryError") when the limit hit outside code that could raise it.
            return self._memory_error()
        if end.code is not None and end.code < 0 and not end.killed:
            number = -end.code
            try:
                how = f"killed by {signal.Signals(number).name}"
            except ValueError:
                how = f"killed by signal {number}"
        elif end.killed:
            how = "it closed its protocol pipe" if frame == "eof" else "it sent a malformed reply"
        else:
            how = f"exit code {end.code}"
        tail = f"; its last output: {output}" if output else ""
        return _server_error("worker_crashed", f"the sandbox worker died while grading ({how}){tail}")

    def _exchange(self, data: bytes, deadline: float, request_id: str | None = None) -> dict[str, Any] | str:
        """Send `data`, then return the next frame of request `request_id`, or "timeout", "eof", "output_limit"
        or "protocol" (also for a frame of another request)."""
        view = memoryview(data)
        writing = False
        try:
            if view:
                try:
                    view = view[os.write(self._to_worker, view) :]
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    return "eof"
                if view:
                    self._poll.register(self._to_worker, select.POLLOUT)
                    writing = True
            limit = self.options.max_output_bytes + _FRAME_SLACK
            while True:
                if len(self._inbuf) >= 4:
                    (size,) = _HEADER.unpack_from(self._inbuf)
                    if size > limit:
                        return "output_limit"
                    if len(self._inbuf) >= 4 + size:
                        body = bytes(self._inbuf[4 : 4 + size])
                        del self._inbuf[: 4 + size]
                        try:
                            frame = json.loads(body)
                        except ValueError:
                            return "protocol"
                        if not isinstance(frame, dict) or frame.get("id") != request_id:
                            return "protocol"
                        return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout"
                eof = False
                for fd, _ in self._poll.poll(math.ceil(remaining * 1000)):
                    if fd == self._from_worker:
                        chunk = _read(fd)
                        if chunk == b"":
                            eof = True
                        elif chunk:
                            self._inbuf += chunk
                    elif fd == self._user_output:
                        self._drain_output()
                    elif fd == self._to_worker:
                        try:
                            view = view[os.write(fd, view) :]
                        except BlockingIOError:
                            pass
                        except (BrokenPipeError, ConnectionResetError):
                            eof = True
                        if not view and writing:
                            self._poll.unregister(fd)
                            writing = False
                if eof:
                    return "eof"
        finally:
            if writing:
                self._poll.unregister(self._to_worker)

    def _drain_output(self) -> None:
        limit = self.options.max_output_bytes
        for _ in range(16):
            chunk = _read(self._user_output)
            if chunk == b"":
                self._poll.unregister(self._user_output)  # the worker closed it; the protocol pipe tells the rest
                return
            if chunk is None:
                return
            self.output += chunk
            if len(self.output) > 2 * limit:
                del self.output[:-limit]

    def interrupt(self) -> None:
        """Kill the process that runs user code now; safe from any thread (the driving thread reaps it)."""
        with self.lock:
            if not self.reaped:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.grading_pid, signal.SIGKILL)  # in a PID namespace, its parent then ends as it did

    def _wait(self, timeout: float | None) -> tuple[int, resource.struct_rusage | None] | None:
        """The process's wait status and usage once it has exited within `timeout` seconds (None: forever)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                try:
                    pid, status, usage = os.wait4(self.pid, os.WNOHANG if end is not None else 0)
                except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored by the application)
                    pid, status, usage = self.pid, -1, None
                if pid:
                    self.reaped = True
                    return status, usage
            if end is not None and time.monotonic() >= end:
                return None
            time.sleep(0.002)

    def stop(self, grace: float = 0.0) -> _Exit:
        """Wait up to `grace` seconds for the process to exit, kill it if it has not, reap it, free its resources."""
        self.alive = False
        ended = self._wait(grace)
        if ended is None:
            self.interrupt()
            if self.grading_pid != self.pid:
                ended = self._wait(_EXIT_GRACE)  # the waiting parent reaps the grading process and exits
            if ended is None:
                with self.lock, contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                ended = self._wait(None)
        status, usage = ended  # type: ignore[misc]
        code = os.waitstatus_to_exitcode(status) if status >= 0 else None
        self.proc.returncode = code if code is not None else -signal.SIGKILL
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        maxrss = usage.ru_maxrss * 1024 if usage is not None else 0
        return _Exit(code=code, maxrss=maxrss, killed=self.killed)


def _blames_source(frame: dict[str, Any] | str) -> bool:
    """True for an outcome other than a reply or runtime error (which, while loading, condemns the source)."""
    return not isinstance(frame, dict) or frame.get("t") in ("limit", "crash")


def _read(fd: int) -> bytes | None:
    """Up to 64 kB from a non-blocking pipe: b"" at EOF, None when nothing is there yet."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class _Slot:
    """A thread that takes samples from the pool's queue and grades them on its own worker process."""

    def __init__(self, pool: SandboxPool, index: int) -> None:
        self.pool = pool
        self.worker: _Worker | None = None
        self.job: _Job | None = None  # the run whose sample it grades now
        self.thread = threading.Thread(target=self._serve, name=f"gradekit-sandbox-{index}", daemon=True)

    def interrupt(self) -> None:
        """Kill the current worker process, if any (from any thread)."""
        worker = self.worker
        if worker is not None:
            worker.interrupt()

    def _serve(self) -> None:
        pool = self.pool
        try:
            self._start_worker()  # warm up at once, before the first sample arrives
            while (task := pool._take(self.worker.key if self.worker is not None else None)) is not None:
                job, index = task
                self.job = job
                try:
                    call = self._grade(job, index)
                except Exception as e:  # a bug here must not leave a job waiting forever
                    self._drop_worker()
                    call = _server_error("worker_crashed", f"sandbox pool error: {type(e).__name__}: {e}")
                self.job = None
                pool._done(job, index, call)
                if self.worker is None and not pool._closed:
                    self._start_worker()  # the next sample, of this run or the next, finds a worker ready
        finally:
            self._drop_worker()

    def _start_worker(self) -> str | None:
        if self.worker is not None:
            return None
        try:
            worker = _Worker(self.pool._options)
        except OSError as e:
            return f"cannot start a process: {e}"
        self.worker = worker
        problem = worker.wait_ready()
        if problem is not None:
            self.worker = None
            return problem
        self.pool._isolation = dict(worker.isolation)
        return None

    def _drop_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None and worker.alive:
            worker.stop(0.0)

    def _grade(self, job: _Job, index: int) -> Call:
        pool = self.pool
        known = pool._bad_sources.get(job.key)
        if known is not None:
            return known
        if self.worker is not None and self.worker.key not in (None, job.key):
            self._drop_worker()  # a worker never serves two graders: what one left behind, the next cannot see
        problem = self._start_worker()
        if problem is not None:
            if pool._closed:
                return pool._closed_call
            return _server_error("worker_start_failed", f"the sandbox worker did not start: {problem}")
        worker = self.worker
        assert worker is not None
        call, load_failed = worker.grade(job.key, job.grader, job.samples[index], job.items[index])
        if not worker.alive:
            self.worker = None
            if pool._closed and call.error is not None:
                return pool._closed_call
        if load_failed and call.error is not None:
            e = call.error
            known = Call(error=GradingError(e.flag, f"{e.message} (while loading the grader source)", e.detail))
            pool._remember_bad_source(job.key, known)
            return known
        return call


class SandboxPool:
    """A warm pool of sandboxed worker processes that run `python` graders (a `PythonExecutor`).

    Limits apply to each call of `grade()`: `timeout` seconds of wall time, `cpu_time` seconds of CPU,
    `memory_bytes` of address space, and `max_output_bytes` for its result and for the output it keeps;
    `tmp_bytes` bounds the files of a worker's private temp directory where it is a tmpfs.
    `extra_env` adds variables to the workers' otherwise scrubbed environment (e.g. `NLTK_DATA`).
    Processes start on first use; `close()` (or leaving `async with` / `with`) ends them all.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        timeout: float = 120.0,
        cpu_time: float = 120.0,
        memory_bytes: int = 2 * 1024**3,
        max_output_bytes: int = 1024**2,
        tmp_bytes: int = 64 * 1024**2,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        workers = workers if workers is not None else os.cpu_count() or 1
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if timeout <= 0 or cpu_time <= 0:
            raise ValueError("timeout and cpu_time must be positive")
        if memory_bytes <= 0 or max_output_bytes <= 0 or tmp_bytes <= 0:
            raise ValueError("memory_bytes, max_output_bytes and tmp_bytes must be positive")
        self.workers = workers
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            # One thread per worker for numeric libraries: the pool already runs one worker per core.
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            **(extra_env or {}),
        }
        tmp_root = _temp_root()
        config = {
            "memory": memory_bytes,
            "max_output": max_output_bytes,
            "max_detail": MAX_DETAIL_CHARS,
            "parent": os.getpid(),
            "path": _import_path(),
            "tmp_root": tmp_root,
            "tmp_bytes": tmp_bytes,
        }
        argv = (sys.executable, "-I", "-B", "-X", "utf8", "-c", _worker_program(), json.dumps(config))
        self._options = _Options(timeout, cpu_time, memory_bytes, max_output_bytes, env, argv, tmp_root)
        self._cond = threading.Condition()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._slots: list[_Slot] = []
        self._closed = False
        self._closed_call = _server_error("pool_closed", "the sandbox pool was closed before this sample was graded")
        self._bad_sources: collections.OrderedDict[str, Call] = collections.OrderedDict()
        self._isolation: dict[str, bool] = {}
        # Workers must not outlive the interpreter even if close() is never called.
        weakref.finalize(self, _interrupt_all, self._slots)

    @property
    def isolation(self) -> dict[str, bool]:
        """Which kernel protections the last started worker got (README, "Sandbox"): namespaces, read-only
        filesystem, private temp directory, dropped capabilities, seccomp."""
        return dict(self._isolation)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (with namespaces, the processes that run user code too)."""
        workers = [w for s in self._slots if (w := s.worker) is not None and w.alive]
        return sorted({pid for w in workers for pid in (w.pid, w.grading_pid)})

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    async def run(
        self, grader: PythonGrader, samples: Sequence[dict[str, Any]], items: Sequence[Any], *, owner: str = ""
    ) -> list[Call]:
        """Grade every sample with `grader.source`'s `grade(sample, item)`: one `Call` per sample, in order.

        A worker serves one grader of one `owner` (say, a job or tenant id) for its whole life.
        """
        if len(samples) != len(items):
            raise ValueError(f"{len(samples)} samples but {len(items)} items")
        if not samples:
            return []
        future: concurrent.futures.Future[list[Call]] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()  # cancelling the awaiting task must not cancel this one
        key = hashlib.sha256(f"{owner}\0{grader.source}".encode("utf-8", "surrogatepass")).hexdigest()
        job = _Job(grader, key, samples, items, [None] * len(samples), future, pending=len(samples))
        with self._cond:
            if self._closed:
                raise RuntimeError("SandboxPool is closed")
            if not self._slots:
                _remove_stale_tmpdirs(self._options.tmp_root)
                self._slots.extend(_Slot(self, i) for i in range(self.workers))
                for slot in self._slots:
                    slot.thread.start()
            self._jobs.append(job)
            self._cond.notify_all()
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            with self._cond:
                job.cancelled = True
            for slot in self._slots:  # its samples in progress stop now: the next run finds free workers
                if slot.job is job:
                    slot.interrupt()
            raise

    def for_owner(self, owner: str) -> OwnedPool:
        """This pool as a `PythonExecutor` for one owner (a job or tenant id): its workers serve no one else."""
        return OwnedPool(self, owner)

    def _take(self, key: str | None) -> tuple[_Job, int] | None:
        """The next sample to grade, preferably of grader `key` (the slot's worker serves no other)."""
        with self._cond:
            while not self._closed:
                jobs = self._jobs
                while jobs and (jobs[0].cancelled or jobs[0].next >= len(jobs[0].samples)):
                    jobs.popleft()
                if jobs:
                    job = next(
                        (j for j in jobs if j.key == key and not j.cancelled and j.next < len(j.samples)), jobs[0]
                    )
                    job.next += 1
                    return job, job.next - 1
                self._cond.wait()
            return None

    def _done(self, job: _Job, index: int, call: Call) -> None:
        with self._cond:
            job.results[index] = call
            job.pending -= 1
            finished = job.pending == 0
        if finished:
            job.future.set_result(job.results)  # type: ignore[arg-type]

    def _remember_bad_source(self, key: str, call: Call) -> None:
        with self._cond:
            self._bad_sources[key] = call
            while len(self._bad_sources) > _BAD_SOURCES_KEPT:
                self._bad_sources.popitem(last=False)

    def close(self) -> None:
        """Stop every worker (samples not yet graded get `pool_closed`); no process or temp directory remains."""
        finished: list[_Job] = []
        with self._cond:
            self._closed = True
            for job in self._jobs:
                unstarted = len(job.samples) - job.next
                if unstarted <= 0 or job.cancelled:
                    continue
                job.results[job.next :] = [self._closed_call] * unstarted
                job.pending -= unstarted
                job.next = len(job.samples)
                if job.pending == 0:
                    finished.append(job)
            self._jobs.clear()
            self._cond.notify_all()
        for job in finished:
            job.future.set_result(job.results)  # type: ignore[arg-type]
        # A slot may be starting a worker as we look: interrupt until every thread has stopped.
        while any(slot.thread.is_alive() for slot in self._slots):
            for slot in self._slots:
                slot.interrupt()
            for slot in self._slots:
                slot.thread.join(0.05)

    async def aclose(self) -> None:
        """`close()` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> SandboxPool:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class OwnedPool:
    """A `SandboxPool` seen by one owner: `run` grades with `owner=` set (see `SandboxPool.for_owner`)."""

    def __init__(self, pool: SandboxPool, owner: str) -> None:
        self.pool = pool
        self.owner = owner

    async def run(self, grader: PythonGrader, samples: Sequence[dict[str, Any]], items: Sequence[Any]) -> list[Call]:
        """`SandboxPool.run` for this owner."""
        return await self.pool.run(grader, samples, items, owner=self.owner)


def _interrupt_all(slots: list[_Slot]) -> None:
    for slot in slots:
        slot.interrupt()
