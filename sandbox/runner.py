"""In-sandbox runner: writes the job's files, applies rlimits, Landlock and seccomp, then runs the job in
the same interpreter."""
# This file runs INSIDE every sandbox backend, passed as `python3 -I -S -c <source>`, so it must
# stay stdlib-only, self-contained and quick to start (no json: it drags in re and enum). It
# reads one marshal-encoded (format 4, plain types only) job dict from stdin until EOF:
#   {"files": {rel_path: text}, "entry": "main.py", "stdin": str | None, "limits": {...},
#    "scratch": "/abs/dir", "python": "/usr/bin/python3", "read_paths": [...],
#    "write_paths": [...], "env": {...}, "probe": False, "end_mark": False}
# Started as root by the local backend, it gets the run's uid as its one argument and drops to it
# first (no groups, real, effective and saved ids alike) before it reads anything.
# Any failure before the job starts exits 125 with a line starting "a4ps-runner:" on stderr. With
# A4PS_READY_MARK=1 (a warm container) it first writes "a4ps-runner: ready" to stderr.
from __future__ import annotations

import _signal  # not `signal`: that one imports enum, a few milliseconds of every run
import ctypes
import errno
import marshal
import os
import resource
import struct
import sys

SETUP_FAILED = 125

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.restype = ctypes.c_int

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
ZERO = ctypes.c_ulong(0)  # prctl is variadic: pass full-width zeros, the kernel checks them

# ---------------------------------------------------------------------------------- Landlock
SYS_LANDLOCK_CREATE_RULESET = 444  # same number on every architecture (added after unification)
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
FS_ALL_V1 = (1 << 13) - 1
FILE_ONLY_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1


def landlock_abi() -> int:
    abi = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                       ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return max(0, abi)


def apply_landlock(read_paths: list[str], write_paths: list[str]) -> dict:
    """Confine the filesystem to read_paths (read/exec) and write_paths (everything)."""
    abi = landlock_abi()
    if abi == 0:
        return {"landlock": "unsupported", "errno": errno.errorcode.get(ctypes.get_errno(), "?")}
    fs_all = FS_ALL_V1
    if abi >= 2:
        fs_all |= FS_REFER
    if abi >= 3:
        fs_all |= FS_TRUNCATE
    if abi >= 5:
        fs_all |= FS_IOCTL_DEV
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    # The attribute struct grew with the ABI; pass only the size this kernel knows.
    attr = struct.pack("=QQQ", fs_all, net, scoped)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    buf = ctypes.create_string_buffer(attr[:size], size)
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return {"landlock": "failed", "errno": errno.errorcode.get(ctypes.get_errno(), "?")}
    read_rights = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    rules = [(p, read_rights) for p in read_paths] + [(p, fs_all) for p in write_paths]
    added = []
    try:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a missing optional path (e.g. /lib64) is not an error
            try:
                if not os.path.isdir(path):
                    rights &= FILE_ONLY_RIGHTS  # the kernel rejects directory rights on files
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
                if libc.syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset),
                                ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
                added.append(path)
            finally:
                os.close(fd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ZERO, ZERO, ZERO) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
        if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return {"landlock": f"abi {abi}", "landlock_net": bool(net), "landlock_scope": bool(scoped),
            "landlock_paths": added}


# ---------------------------------------------------------------------------------- seccomp
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# Syscalls a generated tool never needs and that reach the network, other processes, the
# kernel's attack surface or the host's namespaces. io_uring is here because its opcodes bypass
# seccomp (IORING_OP_SOCKET/CONNECT); setsid/setpgid because leaving the process group would
# escape the group-wide wall-clock kill.
DENY = {
    "x86_64": {
        "socket": 41, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272,
        "setns": 308, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "bpf": 321, "perf_event_open": 298,
        "keyctl": 250, "add_key": 248, "request_key": 249, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "swapon": 167,
        "swapoff": 168, "reboot": 169, "syslog": 103, "acct": 163, "settimeofday": 164,
        "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159, "quotactl": 179,
        "open_by_handle_at": 304, "name_to_handle_at": 303, "fanotify_init": 300,
        "personality": 135, "iopl": 172, "ioperm": 173, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "pidfd_getfd": 438, "kcmp": 312, "setsid": 112, "setpgid": 109, "vhangup": 153,
        # SysV IPC: host objects are shared by every process of the IPC namespace and outlive the job
        "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65, "semctl": 66,
        "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
        # a socket pair can connect or send to a host unix socket by path without socket()
        "socketpair": 53,
        # metadata of files Landlock lets the job see but not write: times, modes, owners, xattrs
        "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280, "chmod": 90, "fchmod": 91,
        "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260,
        "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198,
        "fremovexattr": 199,
    },
    "aarch64": {
        "socket": 198, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268,
        "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "bpf": 280, "perf_event_open": 241, "keyctl": 219, "add_key": 217,
        "request_key": 218, "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "swapon": 224, "swapoff": 225, "reboot": 142, "syslog": 116,
        "acct": 89, "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266,
        "adjtimex": 171, "quotactl": 60, "open_by_handle_at": 265, "name_to_handle_at": 264,
        "fanotify_init": 262, "personality": 92, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "pidfd_getfd": 438, "kcmp": 272, "setsid": 157, "setpgid": 154, "vhangup": 58,
        "shmget": 194, "shmctl": 195, "shmat": 196, "shmdt": 197, "semget": 190, "semctl": 191,
        "semtimedop": 192, "semop": 193, "msgget": 186, "msgctl": 187, "msgrcv": 188, "msgsnd": 189,
        "socketpair": 199,
        "utimensat": 88, "fchmod": 52, "fchmodat": 53, "fchmodat2": 452, "fchownat": 54, "fchown": 55,
        "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14, "lremovexattr": 15,
        "fremovexattr": 16,
    },
}
CLONE_NR = {"x86_64": 56, "aarch64": 220}
CLONE3_NR = 435
CLONE_NS_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                  | 0x20000000 | 0x40000000)  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET

LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_PROCESS = 0x80000000


def build_filter(arch: str) -> list[tuple[int, int, int, int]]:
    """Assemble the BPF program; jumps are resolved from symbolic labels."""
    prog: list[tuple] = []  # (code, jt_label_or_int, jf_label_or_int, k)
    labels: dict[str, int] = {}

    def emit(code: int, k: int, jt: object = 0, jf: object = 0) -> None:
        prog.append((code, jt, jf, k))

    emit(LD_W_ABS, 4)                                   # seccomp_data.arch
    emit(JEQ_K, AUDIT_ARCH[arch], 0, "kill")            # a foreign ABI would bypass the numbers
    emit(LD_W_ABS, 0)                                   # seccomp_data.nr
    if arch == "x86_64":
        emit(JGE_K, 0x40000000, "eperm", 0)             # x32 syscalls
    for nr in sorted(DENY[arch].values()):
        emit(JEQ_K, nr, "eperm", 0)
    emit(JEQ_K, CLONE3_NR, "enosys", 0)                 # clone3 flags sit behind a pointer:
                                                        # make libc fall back to clone
    emit(JEQ_K, CLONE_NR[arch], "clone", 0)
    emit(RET_K, RET_ALLOW)
    labels["clone"] = len(prog)
    emit(LD_W_ABS, 16)                                  # low 32 bits of args[0] (flags)
    emit(JSET_K, CLONE_NS_FLAGS, "eperm", 0)
    emit(RET_K, RET_ALLOW)
    labels["eperm"] = len(prog)
    emit(RET_K, RET_ERRNO | errno.EPERM)
    labels["enosys"] = len(prog)
    emit(RET_K, RET_ERRNO | errno.ENOSYS)
    labels["kill"] = len(prog)
    emit(RET_K, RET_KILL_PROCESS)

    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        assert 0 <= jt < 256 and 0 <= jf < 256
        out.append((code, jt, jf, k))
    return out


def apply_seccomp() -> dict:
    arch = os.uname().machine
    if arch not in DENY:
        return {"seccomp": f"unsupported arch {arch}"}
    insns = build_filter(arch)
    raw = b"".join(struct.pack("=HBBI", *insn) for insn in insns)
    filt = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(insns), ctypes.addressof(filt))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ZERO, ZERO, ZERO) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog), ZERO, ZERO) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS):
            return {"seccomp": "unsupported", "errno": errno.errorcode.get(err, "?")}
        raise OSError(err, "PR_SET_SECCOMP")
    return {"seccomp": f"{len(DENY[arch]) + 1} syscalls denied + namespace clone flags"}


# ---------------------------------------------------------------------------------- job setup
def write_files(scratch: str, files: dict[str, str]) -> None:
    root = os.path.realpath(scratch)
    for rel, text in files.items():
        target = os.path.realpath(os.path.join(root, rel))
        if os.path.isabs(rel) or not target.startswith(root + os.sep):
            raise ValueError(f"file path escapes the scratch dir: {rel!r}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)


def set_stdin(text: str | None) -> None:
    # An anonymous memory file keeps the job's stdin out of the scratch dir and needs no pipe
    # writer that could block; without memfd_create fall back to an unlinked scratch file.
    if text is None:
        fd = os.open("/dev/null", os.O_RDONLY)
    else:
        data = text.encode("utf-8")
        try:
            fd = os.memfd_create("stdin", 0)
        except (AttributeError, OSError):
            fd = os.open(".a4ps-stdin", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.unlink(".a4ps-stdin")
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)
    os.close(fd)


OPTIONAL_RLIMITS = {"RLIMIT_CORE", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE"}


def set_rlimits(limits: dict) -> dict:
    mb = 1024 * 1024
    wanted = {
        "RLIMIT_AS": limits["memory_mb"] * mb,
        "RLIMIT_CPU": (limits["cpu_s"], limits["cpu_s"] + 1),  # SIGXCPU first, SIGKILL a second later
        "RLIMIT_NPROC": limits["pids"],
        "RLIMIT_FSIZE": limits["file_size_mb"] * mb,
        "RLIMIT_NOFILE": limits["open_files"],
        "RLIMIT_CORE": 0,
        "RLIMIT_MEMLOCK": 0,
        "RLIMIT_MSGQUEUE": 0,
    }
    applied = {}
    for name, value in wanted.items():
        soft, hard = value if isinstance(value, tuple) else (value, value)
        res = getattr(resource, name)
        _, current_hard = resource.getrlimit(res)
        if current_hard != resource.RLIM_INFINITY:  # only root may raise a hard limit: lower-or-keep
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError):
            if name in OPTIONAL_RLIMITS:  # gVisor refuses to lower some of these; not essential
                continue
            raise
        applied[name] = soft
    return applied


def drop_to(uid: int) -> None:
    """Become uid for good: no supplementary groups, real, effective and saved ids all uid (which also
    empties every capability set), checked rather than trusted."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid) or os.getgroups():
        raise OSError(f"still not uid {uid} after dropping privileges")


def main() -> dict:
    if len(sys.argv) > 1:
        drop_to(int(sys.argv[1]))
    if os.environ.get("A4PS_READY_MARK") == "1":
        # A container of the warm pool: say that Python is up, then wait for the job (the pool reads
        # this line before it hands the container out; the job never sees this environment).
        os.write(2, b"a4ps-runner: ready\n")
    job = marshal.loads(sys.stdin.buffer.read())
    report: dict = {"uid": os.getuid(), "pid": os.getpid()}
    scratch = job["scratch"]
    os.chdir(scratch)
    os.umask(0o077)
    write_files(scratch, job.get("files", {}))
    set_stdin(job.get("stdin"))
    os.closerange(3, 65536)  # nothing of the launcher's may leak into the job
    report["rlimits"] = set_rlimits(job["limits"])
    if job.get("landlock", True):
        report.update(apply_landlock(job.get("read_paths", []), job.get("write_paths", [scratch])))
    else:
        report["landlock"] = "disabled"
    if job.get("seccomp", True):
        report.update(apply_seccomp())
    else:
        report["seccomp"] = "disabled"
    # A soft wall clock that survives exec: SIGALRM ends an honest job right on time, the
    # launcher's hard kill of the whole group/container stays as the backstop.
    signal_wall = max(1, int(job["limits"]["wall_s"] + 0.999))
    if job.get("probe"):
        try:
            import socket
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            report["socket"] = "allowed"
        except OSError as exc:
            report["socket"] = f"denied ({errno.errorcode.get(exc.errno, exc.errno)})"
        sys.stdout.write(repr(report))
        sys.stdout.flush()
        os._exit(0)
    _signal.alarm(signal_wall)
    return job


def run_job(job: dict) -> None:
    """The job in this interpreter, as `python -E -s -B -u <entry>` would run it: its own __main__,
    argv and environment, the site directories, unbuffered output, no bytecode written. Every
    restriction is already in force, and the runner holds nothing the job may not see (no verdict is
    decided in the sandbox), so a second interpreter start (tens of milliseconds, more under gVisor)
    buys nothing."""
    import builtins
    import io
    import types

    entry = os.path.join(os.getcwd(), job["entry"])
    os.environ.clear()
    os.environ.update(job["env"])
    sys.dont_write_bytecode = True
    sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding=sys.stdin.encoding,
                                 errors=sys.stdin.errors)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding=sys.stdout.encoding,
                                  errors=sys.stdout.errors, write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding=sys.stderr.encoding,
                                  errors="backslashreplace", write_through=True)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    import site  # what `-S` left out, now that the job's own restrictions hold

    site.main()
    sys.path.insert(0, os.path.dirname(entry))
    sys.argv = [entry]
    module = types.ModuleType("__main__")
    module.__file__ = entry
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    status = 0
    try:
        with open(entry, "rb") as fh:
            code = compile(fh.read(), entry, "exec")
        exec(code, module.__dict__)
    except SystemExit as exc:
        if not job.get("end_mark"):
            raise
        status = exit_status(exc)
    except BaseException as exc:  # noqa: BLE001 - reported as the interpreter would, without this frame
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        status = 1
    if job.get("end_mark"):
        end(status)
    sys.exit(status)


def exit_status(exc: SystemExit) -> int:
    """The exit status the interpreter gives a SystemExit (printing a message that is not a number)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


END_MARK = b"\x00a4ps-end:%d\n"


def end(status: int) -> None:
    """Finish as the interpreter would (threads joined, exit handlers run, streams flushed), then say so
    at the end of stdout and stderr, and exit. Through Docker the launcher learns of an exit only once
    the container is torn down, over 100 ms after the job's last line under gVisor; it ends the run at
    these lines instead. The job could write them itself: that ends its own run early, as os._exit could."""
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os.write(1, END_MARK % status)  # on both streams: through Docker they travel apart
    os.write(2, END_MARK % status)
    os._exit(status)


if __name__ == "__main__":
    try:
        ready = main()
    except BaseException as exc:  # noqa: BLE001 - any setup failure must be reported, not raised
        sys.stderr.write(f"a4ps-runner: sandbox setup failed: {type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        os._exit(SETUP_FAILED)
    run_job(ready)
