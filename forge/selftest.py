"""The sandbox self-test: a canary suite of attacks run against each sandbox backend, each judged by
what the job printed and by witnesses on the host (listeners, files, IPC objects, processes).

Two kinds of attack: an *escape* (reaching the network, host files, other processes, the kernel's
namespaces) disqualifies a backend; a *limit* (memory, CPU, disk, processes across a job) that is not
held is shown as a weakness of that host, since some limits need root (a cgroup per run). The quick
pass (escapes only, a few fast attacks) runs once per process before a backend is first used."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from forge import sandbox

ESCAPE, LIMIT = "escape", "limit"
SELFTEST_FAILED = "failed the sandbox self-test: "
LIMITS = sandbox.Limits(wall_s=5, cpu_s=3, memory_mb=128, pids=32, file_size_mb=8, open_files=64,
                        output_bytes=16 * 1024, scratch_mb=32)
SYSCALLS = {"x86_64": {"socket": 41, "io_uring_setup": 425, "keyctl": 250, "bpf": 321, "perf_event_open": 298},
            "aarch64": {"socket": 198, "io_uring_setup": 425, "keyctl": 219, "bpf": 280, "perf_event_open": 241}}


@dataclass
class Cell:
    """One attack on one backend: contained or not, and the evidence either way."""

    key: str
    title: str
    kind: str
    contained: bool
    evidence: str
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    """One backend's column of the matrix."""

    backend: str
    available: bool
    reason: str = ""
    cells: list[Cell] = field(default_factory=list)

    @property
    def escapes(self) -> list[Cell]:
        return [c for c in self.cells if c.kind == ESCAPE and not c.contained]

    @property
    def weak_limits(self) -> list[Cell]:
        return [c for c in self.cells if c.kind == LIMIT and not c.contained]

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "available": self.available, "reason": self.reason,
                "cells": [c.as_dict() for c in self.cells], "escapes": len(self.escapes),
                "weak_limits": len(self.weak_limits)}


# ------------------------------------------------------------------------------ host witnesses
WITNESS_PREFIX = "a4ps-selftest-"
OWNER_FILE = "owner"  # owner_label() of the process that set a witness dir up
UNOWNED_AGE_S = 3600  # a witness dir without an owner file is left alone for this long (it may be being set up)


def sweep_witnesses(root: Path | None = None) -> list[Path]:
    """Remove the witness dirs a self-test could not remove itself because its process was killed on
    the way (a server stopped during its start-up quick pass): this user's dirs whose owner no longer
    runs. The paths removed."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for path in root.glob(WITNESS_PREFIX + "*"):
        try:
            info = path.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            owner = path / OWNER_FILE
            if owner.is_file() and owner.stat().st_uid == os.getuid():
                if not sandbox.owner_is_gone(owner.read_text().strip()):
                    continue
            elif time.time() - info.st_mtime < UNOWNED_AGE_S:
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


class Witness:
    """What a job must not reach, set up on the host for the length of one self-test."""

    def __init__(self) -> None:
        sweep_witnesses()
        self.hits: list[str] = []
        self.token = secrets.token_hex(8)
        self.dir = Path(tempfile.mkdtemp(prefix=WITNESS_PREFIX))
        (self.dir / OWNER_FILE).write_text(sandbox.owner_label())
        os.chmod(self.dir / OWNER_FILE, stat.S_IRUSR | stat.S_IWUSR)
        os.chmod(self.dir, 0o1777)  # only the sandbox, not file modes, may stop what follows
        self.secret = f"secret-{self.token}"
        self.secret_path = self.dir / "secret.txt"
        self.secret_path.write_text(self.secret)
        os.chmod(self.secret_path, stat.S_IRUSR | stat.S_IWUSR)
        self.shared_path = self.dir / "shared.txt"
        self.shared_path.write_text("host")
        os.chmod(self.shared_path, 0o666)
        os.utime(self.shared_path, (1_000_000_000, 1_000_000_000))
        self._socks: list[socket.socket] = []
        self._stop = False
        self.tcp = self._listen(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0), "tcp")
        self.udp = self._listen(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0), "udp")
        self.unix = str(self.dir / "stream.sock")
        self._listen(socket.AF_UNIX, socket.SOCK_STREAM, self.unix, "unix")
        self.dgram = str(self.dir / "dgram.sock")
        self._listen(socket.AF_UNIX, socket.SOCK_DGRAM, self.dgram, "dgram")
        self.abstract = f"{WITNESS_PREFIX}{self.token}"
        self._listen(socket.AF_UNIX, socket.SOCK_STREAM, "\0" + self.abstract, "abstract")
        for path in (self.unix, self.dgram):
            os.chmod(path, 0o777)

    def _listen(self, family: int, kind: int, address: Any, label: str) -> int:
        sock = socket.socket(family, kind)
        sock.bind(address)
        sock.settimeout(0.2)
        if kind == socket.SOCK_STREAM:
            sock.listen(8)
        self._socks.append(sock)
        threading.Thread(target=self._watch, args=(sock, kind, label), daemon=True).start()
        return sock.getsockname()[1] if family == socket.AF_INET else 0

    def _watch(self, sock: socket.socket, kind: int, label: str) -> None:
        while not self._stop:
            try:
                if kind == socket.SOCK_STREAM:
                    conn, _ = sock.accept()
                    conn.close()
                else:
                    sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            self.hits.append(label)

    def fields(self) -> dict[str, Any]:
        return {"tcp": self.tcp, "udp": self.udp, "unix": self.unix, "dgram": self.dgram,
                "abstract": self.abstract, "secret_path": str(self.secret_path), "secret": self.secret,
                "shared_path": str(self.shared_path), "open_dir": str(self.dir), "host_pid": os.getpid(),
                "token": self.token, "arch": os.uname().machine}

    def close(self) -> None:
        self._stop = True
        time.sleep(0.3)
        for sock in self._socks:
            sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def sysv_objects() -> set[str]:
    found = set()
    for kind in ("shm", "sem", "msg"):
        with contextlib.suppress(OSError):
            found |= {f"{kind}:{line.split()[1]}" for line in
                      Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:] if line.split()}
    return found


def _sysv_remove(found: set[str]) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for obj in found:
        kind, ident = obj.split(":")
        call = {"shm": libc.shmctl, "sem": libc.semctl, "msg": libc.msgctl}[kind]
        if kind == "sem":
            call(int(ident), 0, 0)  # IPC_RMID
        else:
            call(int(ident), 0, None)


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found


# ------------------------------------------------------------------------------------ attacks
@dataclass(frozen=True)
class Attack:
    key: str
    title: str
    kind: str
    code: str  # a Template: $tcp, $secret_path, … from Witness.fields(); prints ESCAPED when it got through
    quick: bool = False
    limits: sandbox.Limits = LIMITS
    # beyond an ESCAPED line: why the attack was not contained, from host witnesses (None: it was)
    judge: Callable[[sandbox.SandboxResult, Witness, dict[str, Any]], str | None] | None = None
    before: Callable[[Witness], dict[str, Any]] | None = None
    entry: str = "main.py"  # a Template too: a name to find the job's processes by
    # an attack that is not one job: it runs itself against the backend, (contained, evidence)
    runner: Callable[[sandbox.SandboxBackend], tuple[bool, str]] | None = None


def _lim(**changes: Any) -> sandbox.Limits:
    return sandbox.Limits(**{**asdict(LIMITS), **changes})


_LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n"
_SYSCALL_NR = "NR = " + repr(SYSCALLS) + "[os.uname().machine]\n"


def _hit(label: str) -> Callable[[sandbox.SandboxResult, Witness, dict[str, Any]], str | None]:
    def judge(result: sandbox.SandboxResult, witness: Witness, state: dict[str, Any]) -> str | None:
        time.sleep(0.2)  # let a stray packet or connection land before looking
        return f"the host's {label} listener was reached" if label in witness.hits[state["hits"]:] else None
    return judge


def _file_absent(path_key: str) -> Callable[[sandbox.SandboxResult, Witness, dict[str, Any]], str | None]:
    def judge(result: sandbox.SandboxResult, witness: Witness, state: dict[str, Any]) -> str | None:
        path = Path(witness.fields()[path_key]) / f"escaped-{witness.token}.txt" if path_key == "open_dir" \
            else Path(f"/tmp/a4ps-escaped-{witness.token}.txt")
        if path.exists():
            path.unlink()
            return f"{path} was written on the host"
        return None
    return judge


def _metadata_same(result: sandbox.SandboxResult, witness: Witness, state: dict[str, Any]) -> str | None:
    st = witness.shared_path.stat()
    changed = []
    if st.st_mtime != 1_000_000_000:
        changed.append("time")
    if stat.S_IMODE(st.st_mode) != 0o666:
        changed.append("mode")
    with contextlib.suppress(OSError):
        if os.listxattr(witness.shared_path):
            changed.append("xattr")
    return f"the host file's {', '.join(changed)} changed" if changed else None


def _sysv_before(witness: Witness) -> dict[str, Any]:
    return {"sysv": sysv_objects()}


def _sysv_left(result: sandbox.SandboxResult, witness: Witness, state: dict[str, Any]) -> str | None:
    made = sysv_objects() - state["sysv"]
    if made:
        _sysv_remove(made)
        return f"IPC objects were left on the host: {', '.join(sorted(made))}"
    return None


def _killed(*reasons: str) -> Callable[[sandbox.SandboxResult, Witness, dict[str, Any]], str | None]:
    def judge(result: sandbox.SandboxResult, witness: Witness, state: dict[str, Any]) -> str | None:
        if result.killed_reason in reasons:
            return None
        return f"not stopped by a limit (exit {result.exit_code}, killed: {result.killed_reason or 'no'})"
    return judge


def _no_daemon(result: sandbox.SandboxResult, witness: Witness, state: dict[str, Any]) -> str | None:
    deadline = time.monotonic() + 3
    while (left := processes_with(f"daemon-{witness.token}")) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        return f"processes outlived the run: {left}"
    return None


GUARD = ("import os, signal, sys\n"
         "def reachable(pid):\n"
         "    try:\n"
         "        os.kill(pid, 0)\n"
         "    except OSError:\n"
         "        return False\n"
         "    return True\n"
         "if os.getuid() == 0 or reachable($host_pid):\n"
         "    print('ESCAPED: a host process can be signalled', flush=True)\n"
         "    sys.exit(3)\n")

FORGED_TOOL = '''import json
import typing


def _claim(func):
    os = typing.sys.modules["os"]
    rows = [{"ok": True, "value": "3", "error": ""}] * 4
    os.write(1, ("A4PS-RESULT " + json.dumps({"import_error": None, "results": rows}) + "\\n").encode())
    os._exit(0)


@_claim
def add(a: int, b: int) -> int:
    """Add."""
    return a - b
'''


def _forged_verdict(backend: sandbox.SandboxBackend) -> tuple[bool, str]:
    from forge.toolforge import Check, judge

    checks = [Check("add(1, 2)", "3", "spec"), Check("add(5, 5)", "10", "model")]
    verdict = judge(FORGED_TOOL, checks, backend=backend.name, limits=LIMITS)
    if all(r.get("ok") for r in verdict.results):
        return False, "the forged result line made every check pass"
    return True, "judged outside the sandbox: " + "; ".join(
        f"{c.call} gave {r.get('value') or r.get('error')}" for c, r in zip(checks, verdict.results, strict=True))


ATTACKS: tuple[Attack, ...] = (
    # -- the network and host sockets
    Attack("net-tcp", "TCP to a host port", ESCAPE,
           "import socket\ns = socket.create_connection(('127.0.0.1', $tcp), timeout=2)\nprint('ESCAPED')\n",
           quick=True, judge=_hit("tcp")),
    Attack("net-udp", "UDP to a host port", ESCAPE,
           "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
           "for _ in range(3):\n    s.sendto(b'x', ('127.0.0.1', $udp))\nprint('ESCAPED')\n", judge=_hit("udp")),
    Attack("net-unix", "a host unix socket (path)", ESCAPE,
           "import socket\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(2)\ns.connect('$unix')\nprint('ESCAPED')\n",
           judge=_hit("unix")),
    Attack("net-abstract", "a host abstract unix socket", ESCAPE,
           "import socket\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(2)\ns.connect('\\0$abstract')\n"
           "print('ESCAPED')\n", judge=_hit("abstract")),
    Attack("net-socketpair", "a datagram to a host unix socket through a socket pair", ESCAPE,
           "import socket\na, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\na.connect('$dgram')\n"
           "a.send(b'x')\nprint('ESCAPED')\n", quick=True, judge=_hit("dgram")),
    Attack("net-outside", "a connection to the internet", ESCAPE,
           "import socket\ns = socket.create_connection(('1.1.1.1', 53), timeout=2)\nprint('ESCAPED')\n"),
    Attack("raw-socket", "socket() as a raw system call", ESCAPE,
           _LIBC + _SYSCALL_NR + "fd = libc.syscall(NR['socket'], 2, 1, 0)\n"
           "print('ESCAPED' if fd >= 0 else 'denied')\n",
           quick=True),
    Attack("io-uring", "io_uring (its operations bypass syscall filters)", ESCAPE,
           _LIBC + _SYSCALL_NR + "params = ctypes.create_string_buffer(120)\n"
           "fd = libc.syscall(NR['io_uring_setup'], 8, params)\nprint('ESCAPED' if fd >= 0 else 'denied')\n",
           quick=True),
    # -- namespaces, the kernel, other processes
    Attack("unshare", "a new user namespace", ESCAPE,
           _LIBC + "print('ESCAPED' if libc.unshare(0x10000000) == 0 else 'denied')\n"),
    Attack("mount", "mounting a filesystem", ESCAPE,
           _LIBC + "rc = libc.mount(b'none', b'.', b'tmpfs', 0, None)\nprint('ESCAPED' if rc == 0 else 'denied')\n"),
    Attack("kernel-keys", "kernel keyrings, BPF and perf events", ESCAPE,
           _LIBC + _SYSCALL_NR + "got = [n for n in ('keyctl', 'bpf', 'perf_event_open')\n"
           "       if libc.syscall(NR[n], 0, 0, 0, 0, 0) >= 0]\n"
           "print('ESCAPED ' + ' '.join(got) if got else 'denied')\n"),
    Attack("ptrace", "ptrace of the parent process", ESCAPE,
           _LIBC + "rc = libc.ptrace(16, os.getppid(), 0, 0)\nprint('ESCAPED' if rc == 0 else 'denied')\n"),
    Attack("vm-read", "reading another process's memory", ESCAPE,
           _LIBC + "buf = ctypes.create_string_buffer(16)\n"
           "class IOV(ctypes.Structure):\n    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n"
           "local = IOV(ctypes.addressof(buf), 16)\nremote = IOV(0x400000, 16)\n"
           "n = libc.process_vm_readv($host_pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)\n"
           "print('ESCAPED' if n > 0 else 'denied')\n"),
    Attack("signal-host", "signalling a host process", ESCAPE, GUARD + "print('contained')\n", quick=True),
    Attack("kill-all", "kill(-1): every process it may signal", ESCAPE,
           GUARD + "os.kill(-1, signal.SIGKILL)\nprint('done')\n"),
    Attack("proc-environ", "the host's environment through /proc", ESCAPE,
           "import os\nfound = False\nfor pid in os.listdir('/proc'):\n    try:\n"
           "        found = found or b'$token' in open(f'/proc/{pid}/environ', 'rb').read()\n"
           "    except OSError:\n        pass\nprint('ESCAPED' if found else 'not found')\n"),
    Attack("env-secret", "the host's environment variables", ESCAPE,
           "import os\nprint('ESCAPED' if '$token' in str(os.environ) else 'clean')\n"),
    # -- host files
    Attack("read-secret", "reading a private host file", ESCAPE,
           "data = open('$secret_path').read()\nprint('ESCAPED: read', len(data), 'bytes')\n", quick=True),
    Attack("write-open-dir", "writing into a world-writable host dir", ESCAPE,
           "open('$open_dir/escaped-$token.txt', 'w').write('x')\nprint('ESCAPED')\n",
           judge=_file_absent("open_dir")),
    Attack("write-tmp", "writing into the host's /tmp", ESCAPE,
           "open('/tmp/a4ps-escaped-$token.txt', 'w').write('x')\nprint('ESCAPED')\n", judge=_file_absent("tmp")),
    Attack("metadata", "times, modes and xattrs of a host file", ESCAPE,
           "import os\nfor change in (lambda: os.utime('$shared_path'), lambda: os.chmod('$shared_path', 0o777),\n"
           "               lambda: os.setxattr('$shared_path', 'user.a4ps', b'x')):\n    try:\n        change()\n"
           "        print('ESCAPED')\n    except OSError as exc:\n        print('refused:', exc.strerror)\n",
           judge=_metadata_same),
    Attack("sysv-ipc", "SysV shared memory, semaphores and queues", ESCAPE,
           _LIBC + "made = [libc.shmget(0, 1 << 20, 0o1666), libc.semget(0, 2, 0o1666), libc.msgget(0, 0o1666)]\n"
           "print('ESCAPED' if max(made) >= 0 else 'denied')\n", before=_sysv_before, judge=_sysv_left),
    Attack("daemon", "a process outliving the run", ESCAPE,
           "import os, sys, time\nif os.fork() == 0:\n    try:\n        os.setsid()\n    except OSError:\n"
           "        pass\n    if os.fork() == 0:\n"
           "        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(20)',"
           " 'daemon-$token'])\n    os._exit(0)\nprint('forked')\n", judge=_no_daemon, entry="daemon-$token.py"),
    Attack("forged-verdict", "a tool that forges its test verdict", ESCAPE, "", runner=_forged_verdict),
    # -- limits, per job
    Attack("fork-bomb", "a fork bomb", LIMIT,
           "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n",
           judge=_killed("pids", "timeout", "cpu", "memory")),
    Attack("memory", "allocating without end", LIMIT,
           "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n", judge=_killed("memory")),
    Attack("memory-together", "memory across several processes", LIMIT,
           "import os, time\nkids = []\nfor i in range(6):\n    pid = os.fork()\n    if pid == 0:\n"
           "        held = [bytearray(8 << 20) for _ in range(10)]\n        time.sleep(3)\n        os._exit(0)\n"
           "    kids.append(pid)\nfine = sum(os.waitpid(pid, 0)[1] == 0 for pid in kids)\n"
           "print('ESCAPED: 480 MB held' if fine == 6 else f'{fine} of 6 children held 80 MB')\n",
           judge=_killed("memory")),
    Attack("memfd", "memory in memfd files", LIMIT,
           "import os\nfds = []\nfor i in range(100):\n    fd = os.memfd_create('m')\n"
           "    for _ in range(6):\n        os.write(fd, b'x' * (1 << 20))\n    fds.append(fd)\nprint('ESCAPED')\n",
           limits=_lim(open_files=256), judge=_killed("memory")),
    Attack("cpu", "a busy loop", LIMIT, "while True:\n    pass\n", limits=_lim(wall_s=10),
           judge=_killed("cpu")),
    Attack("cpu-together", "CPU time across several processes", LIMIT,
           "import os\nfor i in range(3):\n    if os.fork() == 0:\n        break\nwhile True:\n    pass\n",
           limits=_lim(wall_s=10), judge=_killed("cpu")),
    Attack("wall-clock", "ignoring signals while sleeping", LIMIT,
           "import signal, time\nfor s in (signal.SIGALRM, signal.SIGTERM, signal.SIGXCPU):\n"
           "    signal.signal(s, signal.SIG_IGN)\ntime.sleep(60)\nprint('ESCAPED')\n", judge=_killed("timeout")),
    Attack("output", "flooding the output", LIMIT, "while True:\n    print('x' * 4096)\n", judge=_killed("output")),
    Attack("file-size", "one huge file", LIMIT,
           "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * (1 << 20))\n"
           "print('ESCAPED')\n",
           judge=_killed("file_size", "disk")),
    Attack("disk", "filling the scratch dir", LIMIT,
           "for i in range(200):\n    with open(f'f{i}', 'wb') as f:\n        f.write(b'x' * (7 << 20))\n"
           "print('ESCAPED')\n", limits=_lim(wall_s=10), judge=_killed("disk", "file_size")),
    Attack("inodes", "a flood of empty files", LIMIT,
           "n = 0\ntry:\n    for i in range(200000):\n        open(f'f{i}', 'w').close()\n        n += 1\n"
           "finally:\n    print('made', n)\nprint('ESCAPED')\n", limits=_lim(wall_s=15)),
)

def run_attack(backend: sandbox.SandboxBackend, attack: Attack, witness: Witness) -> Cell:
    started = time.monotonic()
    if attack.runner is not None:
        try:
            contained, evidence = attack.runner(backend)
        except sandbox.SandboxUnavailable:
            contained, evidence = True, "the backend is out of use, so the forge takes no verdict from it"
        return Cell(attack.key, attack.title, attack.kind, contained, evidence, round(time.monotonic() - started, 2))
    state: dict[str, Any] = {"hits": len(witness.hits)}
    if attack.before:
        state.update(attack.before(witness))
    code = Template(attack.code).substitute(witness.fields())
    entry = Template(attack.entry).substitute(witness.fields())
    try:
        result = backend.run(code, limits=attack.limits, entry=entry, force=True)
    except sandbox.SandboxError as exc:
        return Cell(attack.key, attack.title, attack.kind, False, f"the backend failed to run it: {exc}",
                    round(time.monotonic() - started, 2))
    problem = None
    if "ESCAPED" in result.stdout:
        problem = "the job reported: " + next(line for line in result.stdout.splitlines() if "ESCAPED" in line)[:200]
    if problem is None and attack.judge is not None:
        problem = attack.judge(result, witness, state)
    seconds = round(time.monotonic() - started, 2)
    if problem:
        return Cell(attack.key, attack.title, attack.kind, False, problem, seconds)
    how = (f"stopped: {result.killed_reason} ({result.detail})" if result.killed_reason else
           (result.stderr.strip().splitlines() or [result.stdout.strip() or f"exit {result.exit_code}"])[-1])
    return Cell(attack.key, attack.title, attack.kind, True, how[:240], seconds)


@contextlib.contextmanager
def _witness() -> Iterator[Witness]:
    witness = Witness()
    os.environ["A4PS_SELFTEST_TOKEN"] = witness.token  # must not be visible inside any job
    try:
        yield witness
    finally:
        os.environ.pop("A4PS_SELFTEST_TOKEN", None)
        witness.close()


def run_selftest(backends: list[str] | None = None, *, quick: bool = False,
                 on_cell: Callable[[str, Cell], None] | None = None) -> list[Report]:
    """Every attack (or the quick ones) against each named backend (default: all), one column each."""
    attacks = [a for a in ATTACKS if a.quick or not quick]
    reports = []
    with _witness() as witness:
        for name in backends or list(sandbox.ORDER):
            backend = sandbox.get_backend(name)
            status = backend.status(refresh=True) if not quick else backend.status()
            report = Report(name, status.available, status.reason)
            reports.append(report)
            if not status.available and not status.reason.startswith(SELFTEST_FAILED):
                continue  # a backend out of use for its self-test is attacked again, to show the evidence
            for attack in attacks:
                cell = run_attack(backend, attack, witness)
                report.cells.append(cell)
                if on_cell:
                    on_cell(name, cell)
    return reports


def quick_verdict(backend: sandbox.SandboxBackend) -> str:
    """The quick pass on one backend: "" when every escape was contained, else which got through."""
    with _witness() as witness:
        escaped = [cell for cell in (run_attack(backend, a, witness) for a in ATTACKS if a.quick) if not cell.contained]
    return "; ".join(f"{c.title}: {c.evidence}" for c in escaped)[:400]
