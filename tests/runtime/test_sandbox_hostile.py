"""Hostile python graders against `SandboxPool`: each attack fails, this process lives, and another grader
graded right after it in the same pool gets its exact reward.

The suite runs twice in `make test`: in this process (as root on CI: every capability, no user namespace)
and, through `test_the_suite_holds_without_capabilities`, in a child pytest under
`setpriv --bounding-set=-all --inh-caps=-all` (root without capabilities: a user namespace, uid unmapped).
Native calls go through `dlsym` looked up by hand, so the audit hook never sees them: what stops them is the
kernel (namespaces, seccomp, read-only mounts, dropped capabilities).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gradekit.graders import Call, PythonGrader
from gradekit.runtime.sandbox import SandboxPool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel boundary is Linux's")

SECRET = "gk-secret-5d1e9a"
INNER = "GRADEKIT_HOSTILE_INNER"

# Helpers every hostile source starts with: `native(name, *argtypes)` calls libc without the audit hook.
PRELUDE = """
import ctypes, errno, json, os, signal, sys, threading, time
_libc = ctypes.CDLL(None, use_errno=True)
_dlsym = _libc.dlsym
_dlsym.restype, _dlsym.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]

def native(name, *argtypes):
    address = _dlsym(_libc._handle, name.encode())
    return ctypes.CFUNCTYPE(ctypes.c_long, *argtypes, use_errno=True)(address)

def syscall(number, *args):
    result = native("syscall", *([ctypes.c_long] * (len(args) + 1)))(number, *args)
    return "refused" if result == -1 and ctypes.get_errno() in (errno.EPERM, errno.EACCES, errno.ENOSYS) else result

def attempt(fn):
    try:
        return fn()
    except OSError as e:  # the kernel's answer by its errno name; the audit hook's PermissionError has none
        return errno.errorcode[e.errno] if e.errno else type(e).__name__
"""

# The grader run after every attack: its reward is exact only in a clean worker.
WITNESS = """
import builtins, os, sys

def grade(sample, item):
    tmp = os.environ["TMPDIR"]
    clean = (
        not os.listdir(tmp)
        and "rapidfuzz" not in sys.modules
        and builtins.len("abc") == 3
        and os.getcwd() == tmp
        and os.environ.get("LEAKED") is None
    )
    return item["x"] * 2.0 if clean else -1.0
"""

# name -> (grade() body using `item`, what the attack must return)
ATTACKS: dict[str, tuple[str, Any]] = {
    # signals and async-I/O ownership aimed at the server
    "fcntl_setown_sigkill": (
        """
        import fcntl
        r, w = os.pipe()
        def arm():
            fcntl.fcntl(r, fcntl.F_SETOWN, item["server"])
            fcntl.fcntl(r, 10, signal.SIGKILL)  # F_SETSIG
            fcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC | os.O_NONBLOCK)
            os.write(w, b"x")
            return "armed"
        return attempt(arm)
        """,
        "EPERM",
    ),
    "fcntl_setown_parent": (
        "import fcntl\nr, w = os.pipe()\nreturn attempt(lambda: fcntl.fcntl(r, fcntl.F_SETOWN, os.getppid()))",
        "EPERM",
    ),
    "fcntl_setown_ex": ("return syscall(72, 0, 15, 0)", "refused"),
    "ioctl_fiosetown": (
        "import fcntl, struct\nreturn attempt(lambda: fcntl.ioctl(0, 0x8901, struct.pack('i', item['server'])))",
        "EPERM",
    ),
    "kill_server": ("return syscall(62, item['server'], 9)", "refused"),
    "kill_everyone": ("return syscall(62, -1, 9)", "refused"),
    "sigqueue_server": ("return syscall(129, item['server'], 9, 0)", "refused"),
    "tgkill_server": ("return syscall(234, item['server'], item['server'], 9)", "refused"),
    "tkill_server": ("return syscall(200, item['server'], 9)", "refused"),
    "pidfd_open_server": ("return syscall(434, item['server'], 0)", "refused"),
    "pidfd_getfd": ("return syscall(438, 0, 0, 0)", "refused"),
    "pidfd_send_signal": ("return syscall(424, 0, 9, 0, 0)", "refused"),
    "ptrace_attach_server": ("return syscall(101, 16, item['server'], 0, 0)", "refused"),
    "process_vm_readv": ("return syscall(310, item['server'], 0, 0, 0, 0, 0)", "refused"),
    "kcmp": ("return syscall(312, item['server'], os.getpid(), 0, 0, 0)", "refused"),
    # new processes, programs and namespaces
    "os_fork": ("return attempt(os.fork) if False else type(attempt_fork()).__name__", None),
    "native_fork": ("return syscall(57)", "refused"),
    "clone_process": ("return syscall(56, 17, 0, 0, 0, 0)", "refused"),  # SIGCHLD, no CLONE_THREAD
    "execve": ("return syscall(59, 0, 0, 0)", "refused"),
    "unshare_user": ("return syscall(272, 0x10000000)", "refused"),
    "setns": ("return syscall(308, 0, 0)", "refused"),
    "mount_tmpfs": ("return syscall(165, 0, 0, 0, 0, 0)", "refused"),
    "open_tree": ("return syscall(428, -100, 0, 0)", "refused"),
    "io_uring_setup": ("return syscall(425, 8, 0)", "refused"),
    "bpf": ("return syscall(321, 0, 0, 0)", "refused"),
    "userfaultfd": ("return syscall(323, 0)", "refused"),
    "keyctl": ("return syscall(250, 0, 0, 0, 0, 0)", "refused"),
    "raise_rlimit": ("return syscall(160, 9, 0)", "refused"),  # setrlimit(RLIMIT_AS, ...)
    "open_by_handle_at": ("return syscall(304, -100, 0, 0)", "refused"),
    # the server's secrets: environment, memory, file descriptors, processes
    "environment": ("return SECRET in repr(dict(os.environ)) or SECRET in open('/proc/self/environ').read()", False),
    "processes_in_sight": ("return json.dumps(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))", [1, 2]),
    "other_environ_by_dir_fd": (
        """
        own = os.open("/proc/self", os.O_RDONLY)
        found = []
        for pid in (item["server"], 1):
            try:
                fd = os.open(f"../{pid}/environ", os.O_RDONLY, dir_fd=own)
                found.append(SECRET.encode() in os.read(fd, 1 << 20))
            except OSError:
                found.append(False)
        return json.dumps(found)
        """,
        [False, False],
    ),
    "server_memory": (
        "own = os.open('/proc/self', os.O_RDONLY)\n"
        "return attempt(lambda: os.open(f\"../{item['server']}/mem\", os.O_RDONLY, dir_fd=own))",
        "ENOENT",
    ),
    "inherited_sockets": (
        "import stat\nreturn json.dumps([fd for fd in map(int, os.listdir('/proc/self/fd'))"
        " if attempt(lambda: stat.S_ISSOCK(os.fstat(fd).st_mode)) is True])",
        [],
    ),
    # network
    "inet_socket": ("return syscall(41, 2, 1, 0)", "refused"),
    "unix_socket": ("return syscall(41, 1, 1, 0)", "refused"),
    "python_socket": ("import socket\nreturn attempt(lambda: socket.socket())", "PermissionError"),
    "datagram_sendto_path": (
        """
        import socket
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = ctypes.create_string_buffer(b"\\x01\\x00/dev/log", 16)
        return syscall(44, a.fileno(), 0, 0, 0, ctypes.addressof(address), 11)
        """,
        "refused",
    ),
    "interfaces": (
        "return json.dumps([x.split(':')[0].strip() for x in open('/proc/net/dev').readlines()[2:]])",
        ["lo"],
    ),
    # the filesystem
    "pth_in_site_packages": (
        "return attempt(lambda: open(os.path.join(item['site'], 'gradekit_evil.pth'), 'w').write('import os'))",
        "EROFS",
    ),
    "write_server_dir": (
        "return attempt(lambda: open(os.path.join(item['cwd'], 'evil.txt'), 'w').write('x'))",
        "EROFS",
    ),
    "chmod_system_file": ("return attempt(lambda: os.chmod('/etc/passwd', 0o777))", "EROFS"),
    "private_tmp": (
        "open(os.path.join(os.environ['TMPDIR'], 'left-behind'), 'w').write('x')\n"
        "return json.dumps(os.listdir(os.environ['TMPDIR']))",
        ["left-behind"],
    ),
    "one_huge_file": (
        """
        def fill():
            with open(os.path.join(os.environ["TMPDIR"], "big"), "wb", buffering=0) as f:
                for _ in range(200):
                    f.write(b"x" * 2**20)
            return "unbounded"
        return attempt(fill)
        """,
        "EFBIG",  # RLIMIT_FSIZE, in every mode
    ),
    "many_files": (
        """
        def fill():
            for n in range(5):
                with open(os.path.join(os.environ["TMPDIR"], str(n)), "wb", buffering=0) as f:
                    for _ in range(30):
                        f.write(b"x" * 2**20)
            return "unbounded"
        return attempt(fill)
        """,
        "ENOSPC unless on disk",  # a sized tmpfs fills up; an own directory on disk (uid unmapped) does not
    ),
    # state left for the next grader
    "fake_module": ("sys.modules['rapidfuzz'] = type(sys)('rapidfuzz')\nreturn 'planted'", "planted"),
    "broken_builtins": ("import builtins\nbuiltins.len = lambda x: 99\nreturn 'planted'", "planted"),
    "environment_and_cwd": ("os.environ['LEAKED'] = '1'\nos.chdir('/')\nreturn 'planted'", "planted"),
    "lingering_thread": (
        """
        def steal():  # waits on every pipe for the next request, to answer it before the worker does
            import select
            fds = [int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2]
            while True:
                for fd in select.select(fds, [], [], 1)[0]:
                    os.read(fd, 1 << 16)
        threading.Thread(target=steal, daemon=True).start()
        return 'planted'
        """,
        "planted",
    ),
    "forged_reply_frames": (
        """
        frame = json.dumps({"t": "ok", "v": 1.0, "cpu": 0}).encode()
        written = 0
        for fd in range(3, 64):
            try:
                os.write(fd, len(frame).to_bytes(4, "big") + frame)
                written += 1
            except OSError:
                pass
        return 'forged'
        """,
        "python_grader_server_error",  # this sample's reply is not the one it expects: the worker is replaced
    ),
    # crashes and limits: one flagged sample each
    "os_exit": ("os._exit(0)", "python_grader_server_error"),
    "segfault": ("ctypes.string_at(0)", "python_grader_server_error"),
    "memory_bomb": ("hoard = []\nwhile True:\n    hoard.append(bytearray(10**7))", "python_grader_server_error"),
    "recursion": ("def f(n):\n    return f(n + 1)\nreturn f(0)", "python_grader_runtime_error"),
    "huge_output": ("for _ in range(50):\n    print('x' * 10**6)\nreturn 'printed'", "printed"),
    "stdin": ("return sys.stdin.read()", ""),
    "spin": ("while True:\n    pass", "unresponsive_reward_error"),
}

# Shared by "os_fork": the audit hook refuses it before the kernel is asked.
PRELUDE += """
def attempt_fork():
    try:
        os.fork()
    except PermissionError as e:
        return e
    return None
"""
ATTACKS["os_fork"] = ("return type(attempt_fork()).__name__", "PermissionError")


def _source(body: str) -> str:
    return (
        PRELUDE
        + f"\nSECRET = {SECRET!r}\n\ndef grade(sample, item):\n"
        + textwrap.indent(textwrap.dedent(body).strip(), "    ")
    )


def _outcome(call: Call) -> Any:
    """The flag of a failed call, else its value (JSON text parsed: graders return lists as JSON)."""
    if call.error is not None:
        return call.error.flag
    value = call.value
    return json.loads(value) if isinstance(value, str) and value[:1] in ("[", "{") else value


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    os.environ["GRADEKIT_TEST_SECRET"] = SECRET  # the server's secret, which no worker may see
    try:
        with SandboxPool(workers=2, timeout=10.0, memory_bytes=512 * 1024**2) as shared:
            yield shared
    finally:
        del os.environ["GRADEKIT_TEST_SECRET"]


def _run(pool: SandboxPool, source: str, items: list[Any]) -> list[Call]:
    grader = PythonGrader(name="hostile", source=source)
    return asyncio.run(pool.run(grader, [{"output_text": "x"}] * len(items), items))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_contained(pool: SandboxPool, name: str, tmp_path: Path) -> None:
    body, expected = ATTACKS[name]
    site_packages = next(p for p in site.getsitepackages() if os.path.isdir(p))
    item = {"server": os.getpid(), "site": site_packages, "cwd": os.getcwd()}
    calls = _run(pool, _source(body), [item])
    outcome = _outcome(calls[0])
    if expected == "ENOSPC unless on disk":
        expected = "ENOSPC" if pool.isolation["bounded_tmp"] else "unbounded"
    assert outcome == expected, calls[0]
    assert not os.path.exists(os.path.join(site_packages, "gradekit_evil.pth"))
    assert not os.path.exists(os.path.join(os.getcwd(), "evil.txt"))
    # Another grader, right after, in the same pool: exact rewards, in order, with a clean interpreter.
    witness = _run(pool, WITNESS, [{"x": 1.5}, {"x": 2.0}, {"x": 3.25}])
    assert [_outcome(c) for c in witness] == [3.0, 4.0, 6.5]


def test_the_pool_reports_its_protections(pool: SandboxPool) -> None:
    _run(pool, WITNESS, [{"x": 1.0}])
    isolation = pool.isolation
    assert all(isolation[k] for k in ("pid_namespace", "mount_namespace", "network_namespace", "seccomp"))
    assert isolation["readonly_filesystem"] and isolation["capabilities_dropped"] and isolation["private_tmp"]
    without_capabilities = os.environ.get(INNER) == "1" or os.geteuid() != 0
    assert isolation["user_namespace"] == without_capabilities
    # Root without CAP_SETFCAP cannot map its uid: a tmpfs there would not be writable, so the temp directory is
    # an own directory on disk, bounded per file only.
    assert isolation["bounded_tmp"] == (not without_capabilities or os.geteuid() != 0)


def test_the_suite_holds_without_capabilities() -> None:
    """This module again, in a pytest run as root with every capability dropped."""
    if os.environ.get(INNER) == "1":
        pytest.skip("this is the run without capabilities")
    if os.geteuid() != 0:
        pytest.skip("this process has no capabilities already: the suite above was the unprivileged run")
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "util-linux's setpriv is needed to drop capabilities"
    command = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]
    command += [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    done = subprocess.run(command, env={**os.environ, INNER: "1"}, capture_output=True, text=True, timeout=900)
    tail = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    assert f"{len(ATTACKS) + 1} passed, 1 skipped" in done.stdout, tail
