"""Sandbox backends for generated code: Docker+gVisor, Docker+runc, bubblewrap and local, one interface."""
from __future__ import annotations

import ast
import atexit
import contextlib
import ctypes
import functools
import logging
import marshal
import os
import pwd
import random
import re
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a4ps_site.processes import process_start

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

logger = logging.getLogger(__name__)

__all__ = [
    "BackendStatus",
    "DockerBackend",
    "Limits",
    "SandboxBackend",
    "SandboxError",
    "SandboxResult",
    "SandboxUnavailable",
    "available_backends",
    "configure_warm_pool",
    "get_backend",
    "run",
    "select_backend",
]

RUNNER_PATH = Path(__file__).resolve().parent.parent / "sandbox" / "runner.py"
DOCKER_IMAGE = os.environ.get("A4PS_SANDBOX_IMAGE", "a4ps-sandbox:latest")
# Per-run uids come from a range no distribution allocates (useradd stops far below), so a run's
# uid owns nothing on the host and RLIMIT_NPROC counts only that run's processes.
UID_BASE = 2_000_000_000
UID_SPAN = 1 << 24
SCRATCH_BASE = Path(os.environ.get("A4PS_SANDBOX_TMP", tempfile.gettempdir()))
STATUS_TTL_S = 60.0
SETUP_FAILED = 125  # the runner's exit code when it could not prepare the job
MIN_OUTPUT_BYTES = 1024
SCRATCH_INODES = 4096  # files and directories a job may make in its scratch dir

# Killed reasons, in words a dashboard can show as they are.
TIMEOUT, CPU, MEMORY, PIDS, FILE_SIZE, DISK, OPEN_FILES, OUTPUT, SANDBOX_ERROR = (
    "timeout", "cpu", "memory", "pids", "file_size", "disk", "open_files", "output", "sandbox_error",
)


class SandboxError(RuntimeError):
    """The sandbox could not run the job (not the job failing)."""


class SandboxUnavailable(SandboxError):
    """The requested backend cannot run on this host."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run; every backend enforces all of them, and wall_s always."""

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 256
    pids: int = 64
    file_size_mb: int = 16
    open_files: int = 64
    output_bytes: int = 64 * 1024
    scratch_mb: int = 64  # total size of the writable scratch dir

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")
        if self.open_files < 8:
            raise ValueError("Limits.open_files must be at least 8 (the interpreter needs a few)")

    def as_job(self) -> dict:
        return {
            "wall_s": float(self.wall_s), "cpu_s": int(max(1, round(self.cpu_s))),
            "memory_mb": int(self.memory_mb), "pids": int(self.pids),
            "file_size_mb": int(self.file_size_mb), "open_files": int(self.open_files),
        }


@dataclass(frozen=True)
class SandboxResult:
    """What a run produced; killed_reason says which limit or guard ended it, if any."""

    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    killed_reason: str | None
    backend: str
    detail: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    warm: bool = False  # a container of the warm pool ran it

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed_reason is None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run here, why (not), and what it enforces on this host."""

    name: str
    available: bool
    reason: str
    enforced: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Outcome:
    """Raw facts the supervisor collected, before classification."""

    returncode: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_over: bool = False
    stderr_over: bool = False
    timed_out: bool = False
    disk_over: bool = False
    cpu_over: bool = False  # the job's processes together used more CPU time than allowed
    warm: bool = False  # ran in a container started ahead of need
    oom_killed: bool = False
    duration_s: float = 0.0
    ended_by_mark: bool = False  # the runner's end line ended the run (the status is the job's own)


# ------------------------------------------------------------------------------------ helpers
_libc = ctypes.CDLL(None, use_errno=True)
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2
_uids_in_use: set[int] = set()
_uid_lock = threading.Lock()


def _is_root() -> bool:
    return os.geteuid() == 0


def _scratch_root() -> Path:
    """This user's parent of per-run scratch dirs; refuses one another uid planted (e.g. in /tmp)."""
    root = SCRATCH_BASE / f"a4ps-sandbox-{os.geteuid()}"
    try:
        root.mkdir(mode=0o711, parents=True)
    except FileExistsError:
        pass
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SandboxError(f"{root} is not a private directory of uid {os.geteuid()}")
    return root


def _runner_source() -> str:
    return RUNNER_PATH.read_text(encoding="utf-8")


def _fresh_uid() -> int:
    """An unused uid for one run: not in the passwd database and not handed out concurrently."""
    with _uid_lock:
        for _ in range(100):
            uid = UID_BASE + random.randrange(UID_SPAN)
            if uid in _uids_in_use:
                continue
            try:
                pwd.getpwuid(uid)
            except KeyError:
                _uids_in_use.add(uid)
                return uid
    raise SandboxError("could not find a free sandbox uid")


def _release_uid(uid: int | None) -> None:
    if uid is not None:
        with _uid_lock:
            _uids_in_use.discard(uid)


def _as_uid(cmd: list[str], uid: int | None) -> tuple[list[str], dict[str, Any]]:
    """The argv and Popen options that run cmd as uid (its own group, no supplementary groups).

    Through util-linux's setpriv where it is installed: Popen's own user=/group= cannot use vfork, so
    each start copies the page tables of this (large: models, Django) process — measured 18 ms a
    start here, against 1.7 ms through setpriv. setpriv sets real, effective and saved ids alike."""
    if uid is None:
        return cmd, {}
    setpriv = _setpriv()
    if setpriv:
        return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *cmd], {}
    return cmd, {"user": uid, "group": uid, "extra_groups": []}


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")


def _kill_uid(uid: int, rounds: int = 20) -> None:
    """SIGKILL every process of uid: a helper running as uid signals -1 (all it may) until none is left.

    A zombie still counts as signalable, so callers that have not reaped the job yet pass rounds=1.
    """
    # Spawned through subprocess (vfork+exec), not os.fork: the host process may have threads.
    kill_bin = shutil.which("kill", path="/usr/bin:/bin")
    cmd = [kill_bin, "-KILL", "-1"] if kill_bin else [
        _sandbox_python() or sys.executable, "-I", "-S", "-c", "import os; os.kill(-1, 9)"]
    argv, as_uid = _as_uid(cmd, uid)
    for _ in range(rounds):
        done = subprocess.run(argv, env={}, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False, **as_uid)
        if done.returncode != 0:  # ESRCH: nothing of that uid is left
            return


def _killpg(pgid: int) -> None:
    # One signal is enough: a group kill is atomic against fork (a child forked concurrently
    # is aborted by the pending SIGKILL), and the job cannot leave the group (setsid/setpgid
    # are denied by seccomp). Callers signal before reaping the leader, so the pgid is pinned.
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _world_traversable(path: str) -> bool:
    """True if an unrelated uid can reach and execute path (every parent has o+x)."""
    p = Path(path).resolve()
    try:
        if not p.stat().st_mode & 0o001:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in p.parents)
    except OSError:
        return False


def _cgroup_note() -> str:
    """What the cgroup per run enforces on this host, in words for the Forge page."""
    probe = _JobCgroup.create(Limits(), None)
    if probe is None:
        if not _is_root():
            why = ("not root, and no cgroup v2 delegated to the worker: `python3 a4ps.py run` starts the "
                   "product in a systemd user scope with one where systemd-run and a user session are there")
            if not _cgroup_v2():
                why += (f"; or, cgroup v1 here, root hands this user parents of its own with "
                        f"`sh sandbox/setup_host.sh --cgroups-for {_user_name()}` (until the next boot)")
        else:
            why = "no writable cgroup v2 hierarchy" if _cgroup_v2() else "no writable cgroup v1 hierarchy"
        return f"no cgroup per run ({why}): memory and CPU time limited per process only"
    probe.remove()
    if not probe.unified:
        return ("cgroup v1 per run: memory (memfd and tmpfs included, no swap), process count "
                "and CPU time limited across all of the job's processes")
    held = ["CPU time"]
    if "memory" in probe.controllers:
        held.insert(0, "memory (memfd and tmpfs included, no swap)")
    if "pids" in probe.controllers:
        held.insert(-1, "process count")
    missing = [c for c in ("memory", "pids") if c not in probe.controllers]
    note = f"cgroup v2 per run: {', '.join(held)} limited across all of the job's processes"
    if missing:
        words = {"memory": "memory", "pids": "process count"}
        note += (f"; no {' or '.join(missing)} controller here, so {' and '.join(words[c] for c in missing)} "
                 "stay limited per process")
    return note


def _shell() -> str:
    found = shutil.which("sh", path="/usr/bin:/bin")
    if not found:
        raise SandboxUnavailable("no /bin/sh to start the job in its cgroup")
    return found


def _sandbox_python() -> str | None:
    """The interpreter local sandboxes run: reachable by a fresh uid when we are root."""
    explicit = os.environ.get("A4PS_SANDBOX_PYTHON")
    candidates = [explicit] if explicit else []
    candidates += [getattr(sys, "_base_executable", "") or sys.executable, sys.executable,
                   "/usr/bin/python3", "/usr/local/bin/python3"]
    for cand in candidates:
        if not cand or not os.path.exists(cand):
            continue
        real = os.path.realpath(cand)
        if _is_root() and not (_world_traversable(real) and _world_traversable(_venv_home(real) or real)):
            # e.g. /root/.pyenv: a per-run uid could not even exec it; or a virtual environment whose
            # base interpreter lies there, which a uid's interpreter would not find (and root's would)
            continue
        return real
    return None


def _venv_home(python: str) -> str | None:
    """The base interpreter's directory of a virtual environment's python (its pyvenv.cfg `home`)."""
    for cfg in (Path(python).parent / "pyvenv.cfg", Path(python).parent.parent / "pyvenv.cfg"):
        try:
            text = cfg.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        found = re.search(r"^\s*home\s*=\s*(.+?)\s*$", text, re.M)
        return found.group(1) if found else None
    return None


def _python_prefix(python: str) -> str:
    return str(Path(python).resolve().parent.parent)


def _system_read_paths(python: str) -> list[str]:
    paths = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache",
             "/etc/localtime", "/dev/urandom", "/dev/zero"]
    prefix = _python_prefix(python)
    if not any(prefix == p or prefix.startswith(p + "/") for p in paths):
        paths.append(prefix)
    return paths


def _clean_env(scratch: str) -> dict[str, str]:
    # Nothing is inherited: the job sees only these, whatever the host process carries.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _check_rel_path(rel: str) -> None:
    parts = Path(rel).parts
    if not rel or "\x00" in rel or Path(rel).is_absolute() or ".." in parts:
        raise ValueError(f"sandbox file paths must be relative and stay inside scratch: {rel!r}")


def _du_bytes(root: str, cap_entries: int = 20_000) -> int:
    """Bytes under root; more than SCRATCH_INODES entries count as over any limit (an inode cap
    where no tmpfs holds the scratch dir)."""
    total, stack, seen = 0, [root], 0
    while stack and seen < cap_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    seen += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total if seen <= SCRATCH_INODES else 1 << 62


def _mount_tmpfs(path: str, size_mb: int, uid: int) -> bool:
    """Put a size-capped tmpfs on path (root only); False when the host does not allow it."""
    opts = f"size={size_mb}m,nr_inodes={SCRATCH_INODES},mode=0700,uid={uid},gid={uid}".encode()
    rc = _libc.mount(b"a4ps-scratch", path.encode(), b"tmpfs",
                     ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC), opts)
    return rc == 0


def _umount(path: str) -> None:
    _libc.umount2(path.encode(), MNT_DETACH)


# ------------------------------------------------------------------------------ cgroups
CGROUP_ROOT = Path(os.environ.get("A4PS_CGROUP_ROOT", "/sys/fs/cgroup"))
CGROUP_PREFIX = "a4ps-sandbox"
# Under bwrap, which forks into its namespaces at once, the job joins its cgroup before anything else
# runs: a shell writes its own pid into each cgroup.procs named in $A4PS_CGROUP_PROCS, then execs on,
# so every process the job ever starts is born inside (no race with a fork, no preexec_fn in a
# threaded worker). The local backend's launcher moves its process in instead (_JobCgroup.adopt).
JOIN_CGROUP = ('for f in $A4PS_CGROUP_PROCS; do echo $$ > "$f" || '
               '{ echo "a4ps-runner: could not join the job cgroup $f" >&2; exit 125; }; done; exec "$@"')


_cgroups_swept = False


class _JobCgroup:
    """One cgroup per run, where the host lets us make one (root, a cgroup v2 delegated to us, or cgroup v1
    parents root handed to our uid):
    memory (with memfd and tmpfs pages, swap off), process count and CPU time limited across all of the
    job's processes together. Per-process rlimits stay as a second layer.

    cgroup v1 (a hierarchy per controller), or cgroup v2 where A4PS_CGROUP_ROOT (default /sys/fs/cgroup)
    is a unified hierarchy: runs are made under <root>/a4ps-sandbox with the memory, pids and cpu
    controllers that root hands down. On v2 only root may move a process in (it must be allowed to write
    the common ancestor's cgroup.procs), so the job never joins by itself there: the launcher moves it.
    Not root: runs are made the same way under the cgroup v2 delegated to the worker (_delegated_root), or
    on cgroup v1 under <root>/<controller>/a4ps-sandbox-<uid>, which `sandbox/setup_host.sh --cgroups-for
    USER` makes for that user (_v1_handed_over); v1 lets the owner of a cgroup move its own processes in."""

    def __init__(self, dirs: dict[str, Path], *, unified: bool = False, controllers: frozenset[str] = frozenset()):
        self.dirs = dirs  # controller -> this run's directory (v2: the one directory, as "unified")
        self.unified = unified
        self.controllers = controllers  # v2: the controllers in force for this run

    # -- making one
    @classmethod
    def create(cls, limits: Limits, uid: int | None) -> _JobCgroup | None:
        """A fresh cgroup with the limits set, its cgroup.procs writable by uid (for a job that joins
        itself on v1, JOIN_CGROUP) unless uid is None; None where not possible."""
        if os.environ.get("A4PS_SANDBOX_CGROUPS", "1") == "0":
            return None
        root, unified, prefix = CGROUP_ROOT, _cgroup_v2(), CGROUP_PREFIX
        if not _is_root():
            delegated = _delegated_root()
            if delegated is not None:
                root, unified = delegated, True
            elif not unified and _v1_handed_over():
                prefix = _v1_user_prefix()
            else:
                return None
        global _cgroups_swept
        if not _cgroups_swept:
            _cgroups_swept = True
            cls.sweep(root, prefix)
        name = f"run-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            made = cls._v2(name, limits, root) if unified else cls._v1(name, limits, prefix)
        except OSError:
            return None
        if made is not None and uid is not None and not made.unified:
            for procs in made.procs_files():
                os.chown(procs, uid, uid)
        return made

    @classmethod
    def _v1(cls, name: str, limits: Limits, prefix: str) -> _JobCgroup | None:
        controllers = {c: CGROUP_ROOT / c for c in V1_CONTROLLERS}
        if not all((d / "cgroup.procs").exists() for d in controllers.values()):
            return None
        made = cls({})
        try:
            for controller, base in controllers.items():
                path = base / prefix / name
                path.mkdir(parents=prefix == CGROUP_PREFIX)  # a user's parents are made by root only
                made.dirs[controller] = path
            mem = made.dirs["memory"]
            limit = str(limits.memory_mb * 1024 * 1024)
            (mem / "memory.limit_in_bytes").write_text(limit)
            if (mem / "memory.memsw.limit_in_bytes").exists():
                with contextlib.suppress(OSError):
                    (mem / "memory.memsw.limit_in_bytes").write_text(limit)
            with contextlib.suppress(OSError):
                (mem / "memory.swappiness").write_text("0")
            (made.dirs["pids"] / "pids.max").write_text(str(limits.pids))
        except OSError:
            made.remove()
            raise
        return made

    @classmethod
    def _v2(cls, name: str, limits: Limits, root: Path) -> _JobCgroup:
        parent = _v2_parent(root)
        path = parent / name
        path.mkdir()
        made = cls({"unified": path}, unified=True,
                   controllers=frozenset(_read_words(path / "cgroup.controllers") & set(V2_CONTROLLERS)))
        try:
            if "memory" in made.controllers:
                (path / "memory.max").write_text(str(limits.memory_mb * 1024 * 1024))
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
            if "pids" in made.controllers:
                (path / "pids.max").write_text(str(limits.pids))
        except OSError:
            made.remove()
            raise
        return made

    @classmethod
    def sweep(cls, root: Path, prefix: str) -> None:
        """Remove the run cgroups a dead process left (named run-<pid>-…) under root: in the v1 parents
        named prefix, or in the v2 one."""
        parents = [root / c / prefix for c in V1_CONTROLLERS]
        parents.append(root / CGROUP_PREFIX)
        for parent in parents:
            with contextlib.suppress(OSError):
                for path in parent.glob("run-*-*"):
                    pid = path.name.split("-")[1]
                    if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                        cls({"stale": path}, unified=(path / "cgroup.controllers").exists()).remove()

    # -- using one
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def cpu_seconds(self) -> float:
        """CPU time used so far by every process the job started, dead or alive."""
        try:
            if self.unified:  # cpu.stat's usage is kept for every v2 cgroup, cpu controller or not
                stat = dict(line.split() for line in (self.dirs["unified"] / "cpu.stat").read_text().splitlines())
                return int(stat["usage_usec"]) / 1e6
            return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError, KeyError):
            return 0.0

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the job for the memory limit."""
        try:
            if self.unified:
                if "memory" not in self.controllers:
                    return False
                events = dict(line.split() for line in (self.dirs["unified"] / "memory.events").read_text()
                              .splitlines())
                return int(events.get("oom_kill", 0)) > 0
            text = (self.dirs["memory"] / "memory.oom_control").read_text()
            kills = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
            if "oom_kill" in kills:
                return int(kills["oom_kill"]) > 0
            return int((self.dirs["memory"] / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError):
            return False

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files():
            with contextlib.suppress(OSError, ValueError):
                found |= {int(p) for p in Path(procs).read_text().split()}
        return found

    def adopt(self, pid: int) -> None:
        """Move a process into this cgroup from outside (we are root): its children are born inside."""
        for procs in self.procs_files():
            Path(procs).write_text(str(pid))

    def kill(self) -> None:
        if self.unified:  # every process in it at once, racing no fork (cgroup.kill, Linux 5.14)
            with contextlib.suppress(OSError):
                (self.dirs.get("unified") or self.dirs["stale"]).joinpath("cgroup.kill").write_text("1")
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        """Kill what is left and remove the directories (a cgroup goes once it is empty); False when
        some process of it could not be ended."""
        for _ in range(50):
            self.kill()
            left = False
            for path in self.dirs.values():
                try:
                    path.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:
                    left = True
            if not left:
                return True
            time.sleep(0.02)
        logger.warning("sandbox cgroup %s could not be removed", ", ".join(map(str, self.dirs.values())))
        return False


V2_CONTROLLERS = ("memory", "pids", "cpu")
V1_CONTROLLERS = ("memory", "pids", "cpuacct")


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _v1_user_prefix() -> str:
    return f"{CGROUP_PREFIX}-{os.getuid()}"


def _v1_handed_over() -> bool:
    """Not root on cgroup v1: whether root made this uid a parent cgroup of its own in every controller
    the runs need (sandbox/setup_host.sh --cgroups-for USER); they last until the next boot."""
    prefix = _v1_user_prefix()
    for controller in V1_CONTROLLERS:
        parent = CGROUP_ROOT / controller / prefix
        try:
            if parent.stat().st_uid != os.getuid() or not os.access(parent, os.W_OK | os.X_OK):
                return False
        except OSError:
            return False
    return True


def _cgroup_v2() -> bool:
    """Whether CGROUP_ROOT is a unified (v2) hierarchy."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def _read_words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


WORKER_LEAF = "a4ps-worker"
_delegated: Path | None | bool = False  # False: not looked for yet
_delegated_lock = threading.Lock()


def _own_v2_cgroup() -> Path | None:
    """The cgroup v2 directory this process is in, from /proc/self/cgroup and the cgroup2 mount."""
    try:
        rel = next((line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines()
                    if line.startswith("0::")), None)
        mounts = [line.split(" - ", 1) for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    except OSError:
        return None
    for head, tail in (m for m in mounts if len(m) == 2):
        fields = head.split()
        if tail.split()[0] == "cgroup2" and rel is not None and fields[3] == "/":
            path = Path(fields[4]) / rel.strip().lstrip("/")
            if (path / "cgroup.procs").exists():
                return path
    return None


def _delegated_root() -> Path | None:
    """Not root: the cgroup v2 delegated to this process tree, ready to hold run cgroups; None if none.

    `python3 a4ps.py run` starts the product in a systemd user scope of its own with Delegate=yes and
    names that scope in A4PS_CGROUP_DELEGATED (a person can do the same by hand). Only a cgroup of that
    very name is taken for delegated — not one the variable reached by inheritance, and never a cgroup
    systemd manages itself, which the user may own all the same. A cgroup that holds processes cannot hand
    controllers down, so the product's processes move into a leaf beneath it, `a4ps-worker`, and the
    runs are made beside it, under `a4ps-sandbox` (moving a job in then needs only the delegated
    cgroup's own cgroup.procs, which is ours)."""
    global _delegated
    with _delegated_lock:
        if _delegated is False:
            name = os.environ.get("A4PS_CGROUP_DELEGATED", "")
            _delegated = _prepare_delegated(name) if name else None
        return _delegated if isinstance(_delegated, Path) else None


def _prepare_delegated(name: str) -> Path | None:
    own = _own_v2_cgroup()
    if own is None:
        return None
    base = own.parent if own.name == WORKER_LEAF else own
    if base.name != name:
        logger.warning("A4PS_CGROUP_DELEGATED names %s, but this process is in %s: no cgroup per run", name, own)
        return None
    if not all(os.access(p, os.W_OK) for p in (base, base / "cgroup.procs", base / "cgroup.subtree_control")):
        logger.warning("A4PS_CGROUP_DELEGATED is set but %s is not writable: no cgroup per run", base)
        return None
    leaf = base / WORKER_LEAF
    try:
        leaf.mkdir(exist_ok=True)
        for _ in range(20):  # the product's processes, and any it forks meanwhile
            pids = (base / "cgroup.procs").read_text().split()  # unreadable: OSError, not "empty"
            if not pids:
                return base
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                    (leaf / "cgroup.procs").write_text(pid)
    except OSError as exc:
        logger.warning("could not move the product's processes into %s: %s; no cgroup per run", leaf, exc)
        return None
    logger.warning("processes keep appearing in %s: no cgroup per run", base)
    return None


def _v2_parent(root: Path) -> Path:
    """<root>/a4ps-sandbox, with the controllers root offers handed down to the runs beneath it.
    Enabling one can fail (EBUSY: root is the cgroup of a container that holds processes itself); the
    runs then go without it, and the Forge page says which ones hold."""
    parent = root / CGROUP_PREFIX
    parent.mkdir(exist_ok=True)
    offered = _read_words(root / "cgroup.controllers")
    for where in (root, parent):
        enabled = _read_words(where / "cgroup.subtree_control")
        missing = [c for c in V2_CONTROLLERS if c in offered and c not in enabled]
        if not missing:
            continue
        try:
            (where / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
        except OSError:  # one of them refused: take the others one by one
            for controller in missing:
                with contextlib.suppress(OSError):
                    (where / "cgroup.subtree_control").write_text(f"+{controller}")
    return parent


# ------------------------------------------------------------------------------ supervision
def _supervise(
    proc: subprocess.Popen,
    payload: bytes,
    limits: Limits,
    hard_deadline_s: float,
    kill: Callable[[], None],
    tick: Callable[[], str | None] | None = None,
    end_mark: bool = False,
) -> _Outcome:
    """Feed stdin, collect capped output, enforce the wall clock; kill() ends the whole job.

    tick() runs about every 100 ms and returns DISK or CPU when the job must die for that, else None.
    With end_mark the runner's end line (runner.END_MARK) at the end of both stdout and stderr ends the run
    with its status, without waiting for the process to exit; what follows it is dropped.
    """
    if proc.stdin is None or proc.stdout is None or proc.stderr is None:
        raise ValueError("_supervise needs a process started with stdin, stdout and stderr pipes")
    out = _Outcome()
    started = time.monotonic()
    deadline = started + hard_deadline_s
    cap = max(MIN_OUTPUT_BYTES, limits.output_bytes)
    bufs: dict[FileDescriptorLike, bytearray] = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    over: dict[FileDescriptorLike, bool] = {proc.stdout: False, proc.stderr: False}
    sel = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    pending = memoryview(payload)
    os.set_blocking(proc.stdin.fileno(), False)
    sel.register(proc.stdin, selectors.EVENT_WRITE)
    try:
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):
        pidfd = None  # fall back to polling below
    exited = killed = False
    drain_until = None
    next_tick = started + 0.1
    marked: dict[FileDescriptorLike, int] = {}  # stream -> the status on the runner's end line in it
    ended: int | None = None  # the status, once both streams have ended with that line
    try:
        while True:
            now = time.monotonic()
            if not exited and now >= deadline:
                out.timed_out = True
                kill()
                killed, exited = True, True
                drain_until = now + 1.0
            if exited and (drain_until is None or now >= drain_until or
                           not any(k.events == selectors.EVENT_READ and k.fileobj in bufs
                                   for k in sel.get_map().values())):
                break
            if tick is not None and not exited and now >= next_tick:
                next_tick = now + 0.1
                limit_hit = tick()
                if limit_hit:
                    out.disk_over, out.cpu_over = limit_hit == DISK, limit_hit == CPU
                    kill()
                    killed, exited = True, True
                    drain_until = now + 1.0
            wait = min(0.1, max(0.0, (drain_until or deadline) - now))
            for key, _ in sel.select(timeout=wait):
                obj = key.fileobj
                if obj is proc.stdin:
                    try:
                        n = os.write(proc.stdin.fileno(), pending[:65536])
                        pending = pending[n:]
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, OSError):
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                elif obj == pidfd:
                    sel.unregister(pidfd)
                    exited = True
                    # The main process is done: whatever it left running dies now, while its
                    # zombie still pins the process-group id (no pid reuse race).
                    kill()
                    drain_until = time.monotonic() + 1.0
                else:
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(obj)
                        continue
                    buf = bufs[obj]
                    room = cap - len(buf)
                    if end_mark and not exited and obj not in marked:
                        tail = max(0, len(buf) - 16)  # the end line may have come in two pieces
                        joined = bytes(buf[tail:]) + chunk
                        found = _END_LINE.search(joined)
                        if found:
                            # Each stream ends with the line (the two travel apart through Docker):
                            # what came before it is the job's, nothing after it is read.
                            buf[tail:] = joined[: found.start()][: max(0, cap - tail)]
                            over[obj] = over[obj] or found.start() > cap - tail
                            sel.unregister(obj)
                            marked[obj] = int(found.group(1))
                            if len(marked) == 2:
                                ended = marked[proc.stderr]
                                kill()
                                exited, drain_until = True, time.monotonic()
                            continue
                    buf += chunk[: max(0, room)]
                    if len(chunk) > room and not over[obj]:
                        over[obj] = True
                        if not killed and not exited:
                            kill()
                            killed, exited = True, True
                            drain_until = time.monotonic() + 1.0
            if pidfd is None and not exited and proc.poll() is not None:
                exited = True
                kill()
                drain_until = time.monotonic() + 1.0
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        kill()
        proc.kill()
        proc.wait()
    out.duration_s = time.monotonic() - started
    out.returncode = proc.returncode if ended is None else ended
    out.ended_by_mark = ended is not None
    out.stdout, out.stderr = bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr])
    out.stdout_over, out.stderr_over = over[proc.stdout], over[proc.stderr]
    return out


_END_LINE = re.compile(rb"\x00a4ps-end:(\d{1,3})\n")  # runner.END_MARK


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


_STDERR_REASONS = (
    # (needle in stderr, reason, detail) — checked only when the job failed.
    ("a4ps-runner:", SANDBOX_ERROR, "the sandbox could not prepare the job"),
    ("Error response from daemon", SANDBOX_ERROR, "docker could not start the container"),
    ("MemoryError", MEMORY, "memory limit: allocation refused"),
    ("Cannot allocate memory", MEMORY, "memory limit: allocation refused"),
    ("[Errno 27]", FILE_SIZE, "file size limit reached"),
    ("File too large", FILE_SIZE, "file size limit reached"),
    ("[Errno 28]", DISK, "scratch space exhausted"),
    ("[Errno 122]", DISK, "scratch quota exhausted"),
    ("can't start new thread", PIDS, "process/thread limit reached"),
    ("[Errno 24]", OPEN_FILES, "open file limit reached"),
)


def _classify(out: _Outcome, limits: Limits, signal_from_exit_code: bool) -> tuple[int, str | None, str]:
    """Map raw facts to (exit_code, killed_reason, detail)."""
    code = out.returncode
    sig = -code if code < 0 else None
    if sig is None and signal_from_exit_code and code > 128 and code - 128 < 65:
        sig = code - 128  # containers report a signal death as 128+n
    exit_code = 128 + sig if sig else code
    err = out.stderr.decode("utf-8", "replace")
    if out.timed_out:
        return exit_code, TIMEOUT, f"wall-clock limit of {limits.wall_s:g}s reached; the whole job was killed"
    if out.stdout_over or out.stderr_over:
        return exit_code, OUTPUT, f"output limit of {limits.output_bytes} bytes per stream exceeded; job killed"
    if out.disk_over:
        return exit_code, DISK, f"scratch limit of {limits.scratch_mb} MB or {SCRATCH_INODES} files exceeded; killed"
    if out.cpu_over:
        return exit_code, CPU, f"CPU-time limit of {limits.cpu_s}s reached by the job's processes together; job killed"
    if out.oom_killed:
        return exit_code, MEMORY, f"memory limit of {limits.memory_mb} MB exceeded; killed by the OOM killer"
    if sig == signal.SIGALRM:
        return exit_code, TIMEOUT, f"wall-clock limit of {limits.wall_s:g}s reached (SIGALRM)"
    if sig == signal.SIGXCPU:
        return exit_code, CPU, f"CPU-time limit of {limits.cpu_s}s reached (SIGXCPU)"
    if sig == signal.SIGXFSZ:
        return exit_code, FILE_SIZE, f"file size limit of {limits.file_size_mb} MB reached (SIGXFSZ)"
    if exit_code == 0:
        return 0, None, ""
    if "BlockingIOError: [Errno 11]" in err and ("fork" in err or "spawn" in err):
        return exit_code, PIDS, f"process limit of {limits.pids} reached"
    for needle, reason, detail in _STDERR_REASONS:
        if needle in err and (reason != SANDBOX_ERROR or exit_code == SETUP_FAILED):
            return exit_code, reason, detail
    if sig == signal.SIGKILL and out.duration_s >= limits.cpu_s:
        # Not our kill and not the OOM killer: RLIMIT_CPU's hard limit, for a job that ignored SIGXCPU.
        return exit_code, CPU, f"CPU-time hard limit of {limits.cpu_s + 1}s reached (SIGKILL)"
    if sig == signal.SIGKILL:
        return exit_code, None, "killed by SIGKILL"
    if sig:
        return exit_code, None, f"terminated by {_signal_name(sig)}"
    return exit_code, None, f"exited with status {exit_code}"


def _render(data: bytes, over: bool, cap: int) -> str:
    text = data.decode("utf-8", "replace")
    if over:
        text += f"\n[output truncated at {cap} bytes]"
    return text


# ---------------------------------------------------------------------------------- backends
class SandboxBackend(ABC):
    """One way of running code in isolation; run() never raises for the job's own failures."""

    name: str = "abstract"
    description: str = ""
    # Extra seconds the hard kill waits beyond wall_s (container start-up); the in-sandbox
    # SIGALRM still ends an honest job at wall_s.
    startup_allowance_s: float = 1.0

    def __init__(self) -> None:
        self._status: BackendStatus | None = None
        self._status_at = 0.0
        self._status_lock = threading.Lock()
        self._quick: str | None = None  # the quick self-test's verdict in this process: "" passed, else why not
        self._quick_running = False
        self._pool: _WarmPool | None = None
        self._pool_lock = threading.Lock()

    def status(self, *, refresh: bool = False, quick: bool = False) -> BackendStatus:
        """Availability (cached for a minute), verified by a probe run that reports what is enforced.
        With `quick` (before a backend is used: run(), select_backend()), also by the quick pass of the
        sandbox self-test, once per process: a backend that lets one of its escapes through is not used.
        Without it, a verdict this process already has still applies."""
        with self._status_lock:
            if refresh or self._status is None or time.monotonic() - self._status_at > STATUS_TTL_S:
                try:
                    self._status = self._check()
                except Exception as exc:  # noqa: BLE001 - a broken backend is "unavailable", not a crash
                    self._status = BackendStatus(self.name, False, f"{type(exc).__name__}: {exc}")
                self._status_at = time.monotonic()
            status = self._status
            quick_now = (quick and status.available and self._quick is None and not self._quick_running
                         and os.environ.get("A4PS_SANDBOX_SELFTEST", "1") != "0")
            if quick_now:
                self._quick_running = True  # the self-test's own runs see the probe's status meanwhile
        if quick_now:
            try:
                from forge.selftest import quick_verdict  # the attacks live beside the backends

                verdict = quick_verdict(self)
            except Exception as exc:  # noqa: BLE001 - a self-test that cannot run says so, it does not pass
                verdict = f"the self-test could not run: {type(exc).__name__}: {exc}"
            with self._status_lock:
                self._quick, self._quick_running = verdict, False
        if status.available and self._quick:
            return BackendStatus(self.name, False, f"failed the sandbox self-test: {self._quick}", status.enforced)
        if status.available and self._quick == "":
            return BackendStatus(self.name, True, status.reason,
                                 (*status.enforced, "quick self-test at start: every escape contained"))
        return status

    @property
    def available(self) -> bool:
        return self.status().available

    # -- the warm pool
    def warm(self, size: int, limits: Limits, on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Keep `size` sandboxes with these limits started ahead of need (0 stops the pool); on_change
        gets the pool's status whenever it changes."""
        with self._pool_lock:
            if self._pool is not None and (self._pool.size, self._pool.limits) == (size, limits):
                return
            old, self._pool = self._pool, (_WarmPool(self, size, limits, on_change) if size > 0 else None)
        if old is not None:
            old.close()

    def stop_pool(self) -> None:
        """Remove the pool's ready sandboxes now (a worker exiting)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(wait=True)

    def pool_status(self) -> dict[str, Any] | None:
        pool = self._pool
        return pool.status() if pool is not None else None

    def _warm_start(self, limits: Limits) -> Any:
        """A sandbox whose runner has started and waits for its job (the warm pool's unit)."""
        raise SandboxUnavailable(f"{self.name} keeps no warm pool")

    def _warm_discard(self, item: Any, *, wait: bool = False) -> None:
        """Remove a warm sandbox that will serve no job (in the background, or now with wait)."""
        raise SandboxUnavailable(f"{self.name} keeps no warm pool")

    def _warm_sweep(self) -> None:
        """Remove what dead processes of this host left (before a pool first fills): nothing by default."""
        return None

    def run(
        self,
        code: str,
        *,
        files: dict[str, str] | None = None,
        stdin: str | None = None,
        limits: Limits | None = None,
        entry: str = "main.py",
        force: bool = False,
    ) -> SandboxResult:
        """Run code as `entry` with files beside it in a fresh scratch dir; enforce limits. `force` runs
        it on a backend its self-test took out of use (only the self-test does, to show the evidence)."""
        limits = limits or Limits()
        _check_rel_path(entry)
        all_files = dict(files or {})
        for rel in all_files:
            _check_rel_path(rel)
        all_files[entry] = code
        status = self.status(quick=True)
        if not status.available and not (force and status.reason.startswith("failed the sandbox self-test")):
            raise SandboxUnavailable(f"{self.name}: {status.reason}")
        job = {"files": all_files, "entry": entry, "stdin": stdin, "limits": limits.as_job()}
        out = self._execute(job, limits)
        exit_code, reason, detail = _classify(out, limits, signal_from_exit_code=self._signal_in_exit_code)
        cap = max(MIN_OUTPUT_BYTES, limits.output_bytes)
        return SandboxResult(
            exit_code=exit_code,
            stdout=_render(out.stdout, out.stdout_over, cap),
            stderr=_render(out.stderr, out.stderr_over, cap),
            duration_s=round(out.duration_s, 4),
            killed_reason=reason,
            backend=self.name,
            detail=detail,
            stdout_truncated=out.stdout_over,
            stderr_truncated=out.stderr_over,
            warm=out.warm,
        )

    _signal_in_exit_code = False

    @abstractmethod
    def _check(self) -> BackendStatus: ...

    @abstractmethod
    def _execute(self, job: dict, limits: Limits) -> _Outcome: ...

    def _probe(self) -> dict:
        """Run the runner in probe mode: it applies every restriction and reports them."""
        job = {"files": {}, "entry": "main.py", "stdin": None, "probe": True,
               "limits": Limits(wall_s=20).as_job()}
        out = self._execute(job, Limits(wall_s=20))
        if out.returncode != 0 or out.timed_out:
            err = out.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SandboxError(f"probe run failed (exit {out.returncode}): {' | '.join(err[-3:])[:400]}")
        return ast.literal_eval(out.stdout.decode("utf-8", "replace"))


def _enforced_from_probe(report: dict, base: list[str]) -> tuple[str, ...]:
    items = list(base)
    ll = report.get("landlock", "")
    if ll.startswith("abi"):
        extra = [x for x, on in (("TCP", report.get("landlock_net")),
                                 ("signal+abstract-socket scope", report.get("landlock_scope"))) if on]
        items.append(f"Landlock {ll} (fs writes only in scratch{', ' + ', '.join(extra) if extra else ''})")
    else:
        items.append(f"Landlock {ll or 'off'}")
    items.append(f"seccomp: {report.get('seccomp', 'off')}")
    items.append(f"socket(): {report.get('socket', '?')}")
    items.append(f"runs as uid {report.get('uid')}" if report.get("uid") != 0 else "runs as uid 0 (!)")
    return tuple(items)


@dataclass
class _Launched:
    """A runner started by a host-process backend (local, bubblewrap): its own uid (as root), scratch
    dir and cgroup, waiting for its job on stdin. It serves one job; then everything of it goes."""

    uid: int | None
    scratch: str
    python: str
    inside: str = ""  # the scratch dir as the job sees it
    mounted: bool = False  # a tmpfs of its own on scratch
    cgroup: _JobCgroup | None = None
    proc: subprocess.Popen | None = None

    def kill(self) -> None:
        if self.proc is not None:
            _killpg(self.proc.pid)
        if self.cgroup is not None:
            self.cgroup.kill()  # every process of the job is in it
        elif self.uid is not None:
            _kill_uid(self.uid, rounds=1)

    def clean_up(self) -> None:
        emptied = self.cgroup.remove() if self.cgroup is not None else False
        if self.uid is not None and not emptied:
            _kill_uid(self.uid)  # nothing of this uid may outlive the run
        if self.mounted:
            _umount(self.scratch)
        shutil.rmtree(self.scratch, ignore_errors=True)
        _release_uid(self.uid)

    def discard(self) -> None:
        """End a runner that will serve no job (a pool closing, a launch that failed half-way)."""
        self.kill()
        if self.proc is not None:
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                with contextlib.suppress(OSError, AttributeError):
                    stream.close()  # type: ignore[union-attr]
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.clean_up()


class _LocalBase(SandboxBackend):
    """Shared launch logic of the two host-process backends."""

    _signal_in_exit_code = False

    def _python(self) -> str:
        python = _sandbox_python()
        if python is None:
            raise SandboxUnavailable("no Python interpreter a per-run uid can execute "
                                     "(set A4PS_SANDBOX_PYTHON, e.g. /usr/bin/python3)")
        return python

    @abstractmethod
    def _command(self, python: str, scratch_host: str, scratch_inside: str, limits: Limits) -> list[str]:
        """The argv that starts the runner (directly, or inside bubblewrap)."""

    def _scratch_inside(self, scratch_host: str) -> str:
        return scratch_host

    def _execute(self, job: dict, limits: Limits) -> _Outcome:
        pool = self._pool
        launched = pool.take() if pool is not None and pool.limits == limits else None
        warm = launched is not None
        out = self._serve(launched or self._launch(limits), job, limits)
        out.warm = warm
        return out

    def _launch(self, limits: Limits) -> _Launched:
        """The runner started in a fresh uid (as root), scratch dir and cgroup, waiting for its job."""
        python = self._python()
        uid = _fresh_uid() if _is_root() else None
        launched = _Launched(uid=uid, scratch=tempfile.mkdtemp(prefix="run-", dir=_scratch_root()), python=python)
        try:
            if uid is not None:
                launched.mounted = self._wants_host_tmpfs and _mount_tmpfs(launched.scratch, limits.scratch_mb, uid)
                if not launched.mounted:
                    os.chown(launched.scratch, uid, uid)
            launched.inside = inside = self._scratch_inside(launched.scratch)
            cmd = self._command(python, launched.scratch, inside, limits)
            env = _clean_env(inside)
            # A job that joins by itself (bwrap) does so from a shell still running as root, which then
            # drops to the run's uid through setpriv; without setpriv (v1 only) the shell runs as the
            # uid and its cgroup.procs files are handed to it.
            joins_as_uid = not self._adopts and uid is not None and not _setpriv()
            cgroup = _JobCgroup.create(limits, uid if joins_as_uid else None)
            if cgroup is not None and joins_as_uid and cgroup.unified:
                cgroup.remove()  # on v2 only root may move a process in
                cgroup = None
            launched.cgroup = cgroup
            if cgroup is not None and not self._adopts:
                env["A4PS_CGROUP_PROCS"] = " ".join(cgroup.procs_files())
                if joins_as_uid:
                    argv, as_uid = _as_uid([_shell(), "-c", JOIN_CGROUP, "sh", *cmd], uid)
                else:
                    argv, as_uid = [_shell(), "-c", JOIN_CGROUP, "sh", *_as_uid(cmd, uid)[0]], {}
            elif self._drops_ids and uid is not None:
                argv, as_uid = [*cmd, str(uid)], {}  # the runner drops to uid before it reads anything
            else:
                argv, as_uid = _as_uid(cmd, uid)
            try:
                launched.proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env=env, cwd="/", close_fds=True, start_new_session=True, **as_uid,
                )
            except OSError as exc:
                raise SandboxError(f"{self.name}: could not start {cmd[0]}: {exc}") from exc
            if cgroup is not None and self._adopts:
                # The runner waits for its job on stdin and starts no process before it has it:
                # moved in now, everything the job ever starts is born inside.
                try:
                    cgroup.adopt(launched.proc.pid)
                except OSError as exc:
                    raise SandboxError(f"{self.name}: could not move the job into its cgroup: {exc}") from exc
            return launched
        except BaseException:
            launched.discard()
            raise

    def _serve(self, launched: _Launched, job: dict, limits: Limits) -> _Outcome:
        """One job for a launched runner; everything of the run is removed after it."""
        assert launched.proc is not None
        inside, cgroup, python = launched.inside, launched.cgroup, launched.python
        job = dict(job, scratch=inside, python=python, env=_clean_env(inside),
                   read_paths=_system_read_paths(python), write_paths=[inside, "/dev/null"], end_mark=True)
        try:
            watch_disk = not launched.mounted and self._needs_disk_watch
            limit_bytes = limits.scratch_mb * 1024 * 1024

            def tick() -> str | None:
                if cgroup is not None and cgroup.cpu_seconds() > limits.cpu_s:
                    return CPU
                if watch_disk and _du_bytes(launched.scratch) > limit_bytes:
                    return DISK
                return None

            out = _supervise(launched.proc, marshal.dumps(job, 4), limits,
                             limits.wall_s + self.startup_allowance_s, launched.kill,
                             tick if watch_disk or cgroup is not None else None, end_mark=True)
            if cgroup is not None and cgroup.oom_killed():
                out.oom_killed = True
            return out
        finally:
            launched.clean_up()

    def _warm_start(self, limits: Limits) -> _Launched:
        return self._launch(limits)

    def _warm_discard(self, item: Any, *, wait: bool = False) -> None:
        item.discard()

    _wants_host_tmpfs = True
    _needs_disk_watch = True
    # The launcher moves the started process into the job's cgroup (no shell hop). Not for bwrap,
    # which forks into its namespaces at once: there the job joins from a shell before bwrap runs.
    _adopts = True
    # The runner is started as root and drops to the run's uid itself (one exec fewer than setpriv).
    # Not for bwrap, whose namespaces are set up by bwrap from the ids it is started with.
    _drops_ids = False


class LocalBackend(_LocalBase):
    """Plain host process: per-run uid (as root), rlimits, seccomp, Landlock, clean env, own session."""

    name = "local"
    description = "host process with per-run uid, rlimits, seccomp and Landlock"
    startup_allowance_s = 1.0
    _drops_ids = True

    def _command(self, python: str, scratch_host: str, scratch_inside: str, limits: Limits) -> list[str]:
        return [python, "-I", "-S", "-B", "-c", _runner_source()]

    def _check(self) -> BackendStatus:
        if sys.platform != "linux":
            return BackendStatus(self.name, False, "needs Linux (seccomp, Landlock, rlimits)")
        self._python()
        report = self._probe()
        base = ["wall-clock kill of the process group", "rlimits AS/CPU/NPROC/FSIZE/NOFILE",
                "clean environment", "new session, setsid/setpgid denied"]
        if _is_root():
            base.insert(0, "fresh unprivileged uid per run")
            base.append(f"size- and inode-capped tmpfs scratch ({SCRATCH_INODES} files; falls back to a polled quota)")
        else:
            base.append(f"scratch quota ({SCRATCH_INODES} files) polled every 100 ms; same uid as the host process")
        base.append(_cgroup_note())
        ok = report.get("socket", "").startswith("denied")
        reason = "ready" if ok else "seccomp could not be applied: sockets stay open"
        if ok and not _is_root() and not report.get("landlock_scope"):
            reason = ("ready, weak: not root and no Landlock signal scope, so the job runs as the "
                      "host uid and may signal host processes")
        return BackendStatus(self.name, ok, reason, _enforced_from_probe(report, base))


class BubblewrapBackend(_LocalBase):
    """bubblewrap: all namespaces unshared (no network), read-only system dirs, tmpfs scratch."""

    name = "bwrap"
    description = "bubblewrap namespaces + per-run uid, rlimits, seccomp and Landlock"
    startup_allowance_s = 1.5
    _signal_in_exit_code = True  # bwrap exits 128+n when the job dies of signal n
    _needs_disk_watch = False
    _adopts = False
    SCRATCH = "/a4ps-job"  # a path no Python prefix uses: the tmpfs here would hide a bound-in prefix

    def _scratch_inside(self, scratch_host: str) -> str:
        return self.SCRATCH

    def _bwrap(self) -> str:
        path = shutil.which("bwrap")
        if not path:
            raise SandboxUnavailable("bubblewrap is not installed (apt-get install bubblewrap)")
        return path

    def _command(self, python: str, scratch_host: str, scratch_inside: str, limits: Limits) -> list[str]:
        cmd = [self._bwrap(), "--unshare-all", "--unshare-user", "--disable-userns",
               "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        for path in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
            if os.path.islink(path):
                cmd += ["--symlink", os.readlink(path), path]  # merged-/usr systems
            elif os.path.isdir(path):
                cmd += ["--ro-bind", path, path]
        for path in ("/etc/ld.so.cache", "/etc/localtime"):
            if os.path.exists(path):
                cmd += ["--ro-bind", path, path]
        prefix = _python_prefix(python)
        if not prefix.startswith("/usr/") and prefix != "/usr":
            cmd += ["--ro-bind", prefix, prefix]
        cmd += ["--proc", "/proc", "--dev", "/dev"]
        if os.path.ismount(scratch_host):
            # root: the host's tmpfs caps bytes and inodes (bwrap's own --tmpfs has no inode cap)
            cmd += ["--bind", scratch_host, scratch_inside]
        else:
            cmd += ["--size", str(limits.scratch_mb * 1024 * 1024), "--perms", "0700", "--tmpfs", scratch_inside]
        cmd += ["--chdir", scratch_inside, python, "-I", "-S", "-c", _runner_source()]
        return cmd

    def _check(self) -> BackendStatus:
        if sys.platform != "linux":
            return BackendStatus(self.name, False, "needs Linux")
        self._bwrap()
        self._python()
        report = self._probe()
        base = ["wall-clock kill (pid namespace dies with bwrap)",
                "namespaces: user, pid, net (no network), ipc, uts, cgroup, mount",
                "read-only /usr and libs only; size-capped tmpfs scratch" +
                (f" ({SCRATCH_INODES} files)" if _is_root() else " (no inode cap without root)"),
                "rlimits AS/CPU/NPROC/FSIZE/NOFILE", "clean environment", _cgroup_note()]
        if _is_root():
            base.insert(0, "fresh unprivileged uid per run (outside the user namespace)")
        return BackendStatus(self.name, True, "ready", _enforced_from_probe(report, base))


class DockerBackend(SandboxBackend):
    """A throwaway container: no network, read-only root, tmpfs scratch, all caps dropped."""

    _signal_in_exit_code = True
    startup_allowance_s = 5.0
    SCRATCH = "/work"

    def __init__(self, runtime: str) -> None:
        super().__init__()
        self.runtime = runtime
        self.name = "docker-runsc" if runtime == "runsc" else "docker-runc"
        self.description = ("Docker with gVisor (user-space kernel)" if runtime == "runsc"
                            else "Docker with runc")
        self._client: Any = None  # a docker.DockerClient once connected; the SDK is untyped
        self._swept = False  # containers of dead processes removed once, at this process's first job

    def _docker_client(self) -> Any:
        if self._client is None:
            try:
                import docker  # the SDK is optional: without it the Docker backends are unavailable
            except ImportError as exc:
                raise SandboxUnavailable("the docker Python SDK is not installed") from exc
            self._client = docker.from_env(timeout=15)
        return self._client

    def _check(self) -> BackendStatus:
        if not shutil.which("docker"):
            return BackendStatus(self.name, False, "the docker CLI is not installed (apt-get install docker.io)")
        try:
            client = self._docker_client()
            client.ping()
            info = client.info()
        except SandboxUnavailable as exc:
            return BackendStatus(self.name, False, str(exc))
        except Exception as exc:  # noqa: BLE001 - any daemon trouble means "not available"
            return BackendStatus(self.name, False, f"docker daemon not reachable: {exc}"[:300])
        if self.runtime not in (info.get("Runtimes") or {}):
            return BackendStatus(self.name, False, f"runtime {self.runtime!r} is not registered with dockerd "
                                 "(run sandbox/setup_host.sh as root)")
        try:
            client.images.get(DOCKER_IMAGE)
        except Exception:  # noqa: BLE001 - image missing or unreadable
            return BackendStatus(self.name, False, f"image {DOCKER_IMAGE} not built "
                                 "(sandbox/setup_host.sh builds it offline)")
        report = self._probe()
        base = ["wall-clock kill of the container", "--network=none", "--read-only root",
                "size-capped tmpfs scratch", "memory and pids cgroup limits", "--cap-drop=ALL",
                "no-new-privileges", "docker default seccomp", "fresh unprivileged uid per run",
                "rlimits AS/CPU/NPROC/FSIZE/NOFILE", "clean environment"]
        if self.runtime == "runsc":
            base.insert(0, "gVisor user-space kernel between the job and the host")
        return BackendStatus(self.name, True, f"ready (dockerd {info.get('ServerVersion', '?')})",
                             _enforced_from_probe(report, base))

    def _container_args(self, limits: Limits, uid: int, name: str) -> list[str]:
        """`docker run` options shared by a cold run and a warm container: everything but the command."""
        # The memory cgroup is the limit as configured under gVisor: the sentry's own memory counts
        # against the job (measured: a 200 MB job runs under 256 MB). Under runc it also holds tini,
        # hence a little headroom. RLIMIT_AS/RLIMIT_NPROC stay as the per-process layer inside.
        mem = limits.memory_mb + (0 if self.runtime == "runsc" else 32)
        # With gVisor's ptrace platform every task also costs host threads/stub processes, and a
        # sentry that hits the pids cgroup dies (exit 2): give it headroom, the job's own count
        # is held by RLIMIT_NPROC inside gVisor.
        pids_cgroup = limits.pids + 4 if self.runtime == "runc" else 4096 + 64 * limits.pids
        return [
            "--name", name, "--label", "a4ps.sandbox=1", "--label", f"a4ps.owner={owner_label()}",
            "--runtime", self.runtime, "--network", "none", "--read-only",
            "--tmpfs", f"{self.SCRATCH}:rw,nosuid,nodev,noexec,size={limits.scratch_mb}m,"
                       f"nr_inodes={SCRATCH_INODES},mode=1777",
            "--memory", f"{mem}m", "--memory-swap", f"{mem}m",
            "--pids-limit", str(pids_cgroup), "--cpus", "1",
            # gVisor keeps its own tmpfs on /tmp unless the spec mounts one: make it a read-only
            # one so that, as under runc, only the scratch dir is writable.
            "--tmpfs", "/tmp:ro,nosuid,nodev,noexec,size=64k",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--user", f"{uid}:{uid}", "--workdir", self.SCRATCH, "--hostname", "sandbox",
            "--log-driver", "none", "--init",
        ]

    def _job_for_container(self, job: dict) -> dict:
        scratch = self.SCRATCH
        return dict(job, scratch=scratch, python="/usr/bin/python3", env=_clean_env(scratch),
                    read_paths=_system_read_paths("/usr/bin/python3"), write_paths=[scratch, "/dev/null"],
                    end_mark=True)

    @staticmethod
    def _cli_env() -> dict[str, str]:
        # The CLI needs the user's docker context, never the job: the job's env comes via marshal.
        return {k: v for k, v in os.environ.items()
                if k.startswith("DOCKER_") or k in ("PATH", "HOME", "XDG_RUNTIME_DIR")}

    def _warm_start(self, limits: Limits) -> _WarmContainer:
        """A container whose runner has started (Python up, modules loaded) and waits for a job."""
        client = self._docker_client()
        uid = _fresh_uid()
        name = f"a4ps-warm-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        cidfile = _scratch_root() / f"{name}.cid"
        cmd = ["docker", "run", "-i", "--cidfile", str(cidfile), *self._container_args(limits, uid, name),
               "--label", f"a4ps.warm={socket.gethostname()}:{os.getpid()}", "--env", "A4PS_READY_MARK=1",
               DOCKER_IMAGE, "python3", "-I", "-S", "-c", _runner_source()]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self._cli_env(), close_fds=True, start_new_session=True)
        try:
            assert proc.stderr is not None
            seen = b""
            deadline = time.monotonic() + 60
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stderr, selectors.EVENT_READ)
                while not seen.endswith(READY_MARK):
                    left = deadline - time.monotonic()
                    if left <= 0 or not sel.select(timeout=left):
                        raise SandboxError("a warm container did not start within 60 s")
                    chunk = os.read(proc.stderr.fileno(), len(READY_MARK) - len(seen))
                    if not chunk:
                        raise SandboxError("a warm container exited before it was ready: "
                                           + seen.decode(errors="replace"))
                    seen += chunk
            container_id = cidfile.read_text().strip() if cidfile.exists() else ""
            cidfile.unlink(missing_ok=True)
            return _WarmContainer(name, uid, proc, container_id)
        except BaseException:
            cidfile.unlink(missing_ok=True)
            _killpg(proc.pid)
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(timeout=5)
            with contextlib.suppress(Exception):
                client.api.remove_container(name, force=True)
            _release_uid(uid)
            raise

    def _warm_discard(self, item: Any, *, wait: bool = False) -> None:
        _killpg(item.proc.pid)
        client = self._docker_client()
        if wait:
            _quiet(lambda: client.api.remove_container(item.name, force=True))
            _release_uid(item.uid)
        else:
            _discard_container(client, item.name, item.uid, item.proc)

    def _warm_sweep(self) -> None:
        self.sweep_orphans()

    def sweep_orphans(self) -> int:
        """Remove the sandbox containers, warm or cold, running or exited, that a process of this
        host left behind when it died (SIGKILL, a crash, a daemon thread cut off at exit); returns
        how many. Containers of live processes and of other hosts are left alone."""
        client = self._docker_client()
        removed = 0
        with contextlib.suppress(Exception):  # dockerd away: nothing to sweep now
            for found in client.api.containers(all=True, filters={"label": "a4ps.sandbox=1"}):
                labels = found.get("Labels") or {}
                owner = labels.get("a4ps.owner")
                # Containers from before owner labels: a warm one names its worker as host:pid; any
                # other only once it has exited and is old enough that no live process reads its state.
                warm_host, _, warm_pid = labels.get("a4ps.warm", "").rpartition(":")
                legacy_gone = owner is None and (
                    (warm_host == socket.gethostname() and warm_pid.isdigit()
                     and not os.path.exists(f"/proc/{warm_pid}"))
                    or (found.get("State") == "exited" and time.time() - float(found.get("Created") or 0) > 600))
                if legacy_gone or (owner is not None and owner_is_gone(owner)):
                    with contextlib.suppress(Exception):
                        client.api.remove_container(found["Id"], force=True)
                        removed += 1
        if removed:
            logger.info("removed %d sandbox container(s) left by dead processes", removed)
        return removed

    def _sweep_once(self) -> None:
        with self._pool_lock:
            if self._swept:
                return
            self._swept = True
        threading.Thread(target=self.sweep_orphans, name=f"a4ps-sweep-{self.name}", daemon=True).start()

    def _execute(self, job: dict, limits: Limits) -> _Outcome:
        self._sweep_once()
        pool = self._pool
        if pool is not None and pool.limits == limits:
            container = pool.take()
            if container is not None:
                return self._execute_warm(container, job, limits)
        return self._execute_cold(job, limits)

    def _execute_warm(self, container: _WarmContainer, job: dict, limits: Limits) -> _Outcome:
        """The job in a container started ahead of time, whose runner already waits for it on stdin;
        the container serves this one job and is then removed."""
        client = self._docker_client()
        try:
            def kill() -> None:
                # Not waiting for dockerd here (~100 ms a run): the CLI goes now, the container and
                # whatever the job left in it go in the background, and it is force-removed after.
                _killpg(container.proc.pid)
                threading.Thread(target=_quiet, args=(client.api.kill, container.name), daemon=True).start()

            cpu = _ContainerCpu(container_id=container.container_id)
            cpu.used()  # the baseline: what the container used before its job
            out = _supervise(container.proc, marshal.dumps(self._job_for_container(job), 4), limits,
                             limits.wall_s + self.startup_allowance_s, kill, cpu.tick(limits), end_mark=True)
            out.warm = True
            if out.returncode != 0 and not out.timed_out and not out.ended_by_mark:
                with contextlib.suppress(Exception):
                    state = client.api.inspect_container(container.name).get("State", {})
                    out.oom_killed = bool(state.get("OOMKilled"))
            return out
        finally:
            _discard_container(client, container.name, container.uid, container.proc)

    def _execute_cold(self, job: dict, limits: Limits) -> _Outcome:
        client = self._docker_client()
        uid = _fresh_uid()
        name = f"a4ps-sbx-{uuid.uuid4().hex[:12]}"
        cidfile = _scratch_root() / f"{name}.cid"
        cmd = ["docker", "run", "-i", "--cidfile", str(cidfile), *self._container_args(limits, uid, name),
               DOCKER_IMAGE, "python3", "-I", "-S", "-c", _runner_source()]
        cpu = _ContainerCpu(cidfile=cidfile)
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self._cli_env(), close_fds=True,
                                    start_new_session=True)

            def kill() -> None:
                # CLI first: while nobody reads the attached streams, dockerd can block the
                # container kill behind a full pipe.
                _killpg(proc.pid)
                with contextlib.suppress(Exception):  # already gone or never started
                    client.api.kill(name)

            out = _supervise(proc, marshal.dumps(self._job_for_container(job), 4), limits,
                             limits.wall_s + self.startup_allowance_s, kill, cpu.tick(limits), end_mark=True)
            # No container means the CLI failed before creating one: keep the CLI's exit code.
            with contextlib.suppress(Exception):
                if out.ended_by_mark:
                    raise LookupError("the job's own status stands")
                state = client.containers.get(name).attrs.get("State", {})
                out.oom_killed = bool(state.get("OOMKilled"))
                if not out.timed_out and state.get("Status") == "exited":
                    out.returncode = int(state.get("ExitCode", out.returncode))
            return out
        finally:
            with contextlib.suppress(Exception):  # already removed
                client.containers.get(name).remove(force=True)
            cidfile.unlink(missing_ok=True)
            _release_uid(uid)


def _container_cpu_seconds(container_id: str) -> float | None:
    """CPU time the container's cgroup has used on the host (all its processes, gVisor's sentry too),
    or None where its cgroup is not found (cgroupfs v1 and v2, and the systemd driver, are tried)."""
    root = CGROUP_ROOT
    for path in (root / "cpuacct" / "docker" / container_id / "cpuacct.usage",
                 root / "cpu,cpuacct" / "docker" / container_id / "cpuacct.usage",
                 root / "cpuacct" / "system.slice" / f"docker-{container_id}.scope" / "cpuacct.usage"):
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text()) / 1e9
    for path in (root / "docker" / container_id / "cpu.stat",
                 root / "system.slice" / f"docker-{container_id}.scope" / "cpu.stat"):
        with contextlib.suppress(OSError, ValueError):
            for line in path.read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    return None


class _ContainerCpu:
    """The CPU-time limit across a container's processes: docker's --cpus caps only the rate, and
    gVisor's own accounting inside the sandbox cannot be relied on, so the host's cgroup is read."""

    def __init__(self, cidfile: Path | None = None, container_id: str = "") -> None:
        self.cidfile, self.container_id = cidfile, container_id
        self.baseline: float | None = None

    def used(self) -> float:
        if not self.container_id and self.cidfile is not None:
            with contextlib.suppress(OSError):
                self.container_id = self.cidfile.read_text().strip()
        if not self.container_id:
            return 0.0
        now = _container_cpu_seconds(self.container_id)
        if now is None:
            return 0.0
        if self.baseline is None:
            self.baseline = 0.0 if self.cidfile is not None else now  # warm: what the waiting runner used
        return now - self.baseline

    def tick(self, limits: Limits) -> Callable[[], str | None]:
        return lambda: CPU if self.used() > limits.cpu_s else None


_DISCARDS: set[threading.Thread] = set()
_DISCARDS_LOCK = threading.Lock()


def _discard_container(client: Any, name: str, uid: int, proc: subprocess.Popen | None = None) -> None:
    """Remove a used container in the background (gVisor takes a while to stop); its uid is free after."""
    def remove() -> None:
        try:
            client.api.remove_container(name, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        finally:
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.wait(timeout=30)
            _release_uid(uid)
            with _DISCARDS_LOCK:
                _DISCARDS.discard(threading.current_thread())

    thread = threading.Thread(target=remove, name=f"a4ps-discard-{name}", daemon=True)
    with _DISCARDS_LOCK:
        _DISCARDS.add(thread)
    thread.start()


@atexit.register
def _finish_discards(budget_s: float = 15.0) -> None:
    """A process that ran a job and exits (a command, a test run) removes its containers first,
    for up to budget_s; what is left then is swept by the next process that uses Docker."""
    deadline = time.monotonic() + budget_s
    with _DISCARDS_LOCK:
        pending = list(_DISCARDS)
    for thread in pending:
        thread.join(max(0.0, deadline - time.monotonic()))


def owner_label(pid: int | None = None) -> str:
    """host:pid:start of the process that owns a sandbox container (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{process_start(pid)}"


def owner_is_gone(label: str, host: str | None = None) -> bool:
    """Whether the process an owner label names is of this host and no longer runs. A label of
    another host is never gone from here: that host sweeps its own."""
    parts = label.rsplit(":", 2)
    if len(parts) != 3:
        return False
    owner_host, pid, start = parts
    if owner_host != (host or socket.gethostname()) or not pid.isdigit():
        return False
    return process_start(int(pid)) != start


def _quiet(call: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(Exception):
        call(*args)


READY_MARK = b"a4ps-runner: ready\n"  # what a waiting runner writes to stderr (A4PS_READY_MARK=1)


@dataclass
class _WarmContainer:
    name: str
    uid: int
    proc: subprocess.Popen  # `docker run -i …`: the runner inside has started and waits for its job
    container_id: str = ""


class _WarmPool:
    """Sandboxes started ahead of need for one backend and one set of limits: network-less containers
    (Docker), or a launched runner in its own uid, scratch and cgroup (local, bubblewrap). Each serves
    exactly one job and is then removed; a background thread keeps `size` ready."""

    REFILL_BACKOFF_S = 5.0

    def __init__(self, backend: SandboxBackend, size: int, limits: Limits,
                 on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.backend, self.size, self.limits, self.on_change = backend, size, limits, on_change
        self.ready: list[_WarmContainer] = []
        self.starting = 0
        self.served = self.missed = self.started = 0
        self.last_error = ""
        self._cond = threading.Condition()
        self._closed = False
        backend._warm_sweep()
        self._thread = threading.Thread(target=self._fill, name=f"a4ps-warm-{backend.name}", daemon=True)
        self._thread.start()

    def take(self) -> Any:
        """A ready sandbox, or None at once (the caller starts one cold)."""
        with self._cond:
            container = self.ready.pop(0) if self.ready else None
            if container is None:
                self.missed += 1
            else:
                self.served += 1
            self._cond.notify_all()
        self._changed()
        return container

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the pool is full (a bench or a test waiting for warm sandboxes)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.ready) < self.size and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {"backend": self.backend.name, "size": self.size, "ready": len(self.ready),
                    "starting": self.starting, "served": self.served, "missed": self.missed,
                    "last_error": self.last_error}

    def _changed(self) -> None:
        if self.on_change is not None:
            with contextlib.suppress(Exception):  # a status file that cannot be written never stops a job
                self.on_change(self.status())

    def close(self, *, wait: bool = False) -> None:
        """Stop refilling and remove the ready sandboxes (in the background, or now with wait)."""
        with self._cond:
            self._closed = True
            ready, self.ready = self.ready, []
            self._cond.notify_all()
        for item in ready:
            self.backend._warm_discard(item, wait=wait)

    def _fill(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self.ready) + self.starting >= self.size:
                    self._cond.wait(1.0)
                if self._closed:
                    return
                self.starting += 1
            try:
                item = self.backend._warm_start(self.limits)
            except Exception as exc:  # noqa: BLE001 - the pool degrades to cold starts, never breaks a run
                with self._cond:
                    self.starting -= 1
                    self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self._changed()
                logger.warning("warm sandbox for %s could not start: %s", self.backend.name, exc)
                time.sleep(self.REFILL_BACKOFF_S)
                continue
            with self._cond:
                self.starting -= 1
                closed = self._closed
                if not closed:
                    self.ready.append(item)
                    self.started += 1
                    self.last_error = ""
                    self._cond.notify_all()
            if closed:
                self.backend._warm_discard(item)
                return
            self._changed()


# ------------------------------------------------------------------------------- selection
_BACKENDS: dict[str, SandboxBackend] = {}
_BACKENDS_LOCK = threading.Lock()
ORDER = ("docker-runsc", "docker-runc", "bwrap", "local")


def _backends() -> dict[str, SandboxBackend]:
    with _BACKENDS_LOCK:
        if not _BACKENDS:
            _BACKENDS.update({
                "docker-runsc": DockerBackend("runsc"),
                "docker-runc": DockerBackend("runc"),
                "bwrap": BubblewrapBackend(),
                "local": LocalBackend(),
            })
        return _BACKENDS


def get_backend(name: str) -> SandboxBackend:
    """The backend called name (available or not)."""
    try:
        return _backends()[name]
    except KeyError:
        raise ValueError(f"unknown sandbox backend {name!r}; choose from {', '.join(ORDER)}") from None


def available_backends(*, refresh: bool = False) -> list[BackendStatus]:
    """Every backend, strongest first, with why it is or is not available here."""
    return [get_backend(name).status(refresh=refresh) for name in ORDER]


def select_backend(preference: str = "auto") -> SandboxBackend:
    """The named backend, or with "auto" the strongest available one that passes the quick self-test
    (run once per process for each backend tried); raises SandboxUnavailable."""
    preference = (preference or "auto").strip().lower()
    if preference != "auto":
        backend = get_backend(preference)
        status = backend.status(quick=True)
        if not status.available:
            raise SandboxUnavailable(f"{backend.name}: {status.reason}")
        return backend
    reasons = []
    for name in ORDER:
        backend = get_backend(name)
        status = backend.status(quick=True)
        if status.available:
            return backend
        reasons.append(f"{name}: {status.reason}")
    raise SandboxUnavailable("no sandbox backend is available: " + "; ".join(reasons))


def configure_warm_pool(size: int, limits: Limits, preference: str = "auto",
                        on_change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """Keep `size` sandboxes warm for the backend `preference` picks: Docker containers, or launched
    runners of the local and bubblewrap backends."""
    try:
        backend = select_backend(preference)
    except SandboxUnavailable:
        return None
    backend.warm(size, limits, on_change)
    return backend.pool_status()


def run(
    code: str,
    *,
    files: dict[str, str] | None = None,
    stdin: str | None = None,
    limits: Limits | None = None,
    entry: str = "main.py",
    backend: str = "auto",
) -> SandboxResult:
    """Run code in the strongest available sandbox (or the named backend)."""
    return select_backend(backend).run(code, files=files, stdin=stdin, limits=limits, entry=entry)


def _main() -> None:
    """`python -m forge.sandbox`: print what each backend enforces here."""
    for st in available_backends():
        print(f"{st.name:14} {'yes' if st.available else 'no ':3}  {st.reason}")
        for item in st.enforced:
            print(f"{'':20}- {item}")


if __name__ == "__main__":
    _main()
