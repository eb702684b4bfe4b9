"""Sandbox backends: round trips, limits and the attacks generated code could try, on every available backend."""
from __future__ import annotations

import ast
import contextlib
import http.server
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from string import Template

import pytest

from forge.sandbox import (
    ORDER,
    V1_CONTROLLERS,
    Limits,
    SandboxUnavailable,
    available_backends,
    get_backend,
    select_backend,
)
from forge.selftest import GUARD, processes_with, sysv_objects

# Short limits keep every attack bounded; the slack covers container start-up on a busy host.
FAST = Limits(wall_s=3, cpu_s=3, memory_mb=128, pids=32, file_size_mb=8, open_files=32,
              output_bytes=16 * 1024, scratch_mb=32)
ERRORS = ("PermissionError", "FileNotFoundError", "ProcessLookupError", "ConnectionRefusedError",
          "OSError", "KeyError", "Read-only file system")


@pytest.fixture(scope="module", params=ORDER)
def backend(request):
    status = get_backend(request.param).status()
    if not status.available:
        print(f"\nSKIP sandbox backend {status.name}: {status.reason}")
        pytest.skip(f"{status.name} unavailable: {status.reason}")
    return get_backend(request.param)


# ------------------------------------------------------------------------- host-side witnesses
class _Canary(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"alive")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def canary():
    """A tiny HTTP server in a thread of the test process: it must keep answering through every attack."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(autouse=True)
def host_keeps_working(canary):
    yield
    with urllib.request.urlopen(canary, timeout=5) as resp:
        assert resp.read() == b"alive"
    assert subprocess.run([sys.executable, "-c", "print(42)"], capture_output=True,
                          check=False, timeout=30).stdout.strip() == b"42"


def _host_traces() -> dict[str, set[str]]:
    """What a sandbox run could leave on the host: SysV objects, processes of sandbox uids, scratch
    mounts and dirs, run cgroups, sandbox containers."""
    from forge.sandbox import CGROUP_PREFIX, CGROUP_ROOT, UID_BASE, UID_SPAN, _scratch_root

    procs = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            if UID_BASE <= uid < UID_BASE + UID_SPAN:
                procs.add(f"{entry} (uid {uid})")
    mounts = {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.startswith("a4ps-scratch ")}
    cgroups = {str(p) for c in (*V1_CONTROLLERS, "") for p in (CGROUP_ROOT / c / CGROUP_PREFIX).glob("run-*")}
    cgroups |= {str(p) for c in V1_CONTROLLERS for p in (CGROUP_ROOT / c).glob(f"{CGROUP_PREFIX}-*")}
    containers: set[str] = set()
    if shutil.which("docker"):
        done = subprocess.run(["docker", "ps", "-aq", "--filter", "label=a4ps.sandbox=1"], capture_output=True,
                              text=True, check=False, timeout=60)
        containers = set(done.stdout.split()) if done.returncode == 0 else set()
    return {"sysv": sysv_objects(), "processes": procs, "mounts": mounts,
            "scratch": {p.name for p in _scratch_root().iterdir()}, "cgroups": cgroups, "containers": containers}


@pytest.fixture(scope="module", autouse=True)
def nothing_left_on_the_host():
    before = _host_traces()
    yield
    deadline = time.monotonic() + 5
    while True:
        left = {kind: found - before[kind] for kind, found in _host_traces().items() if found - before[kind]}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == {}, f"sandbox runs left these on the host: {left}"


class _Listeners:
    """TCP, UDP, path and abstract unix listeners on the host that record anything reaching them."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.dir = tempfile.mkdtemp(prefix="a4ps-listen-")
        os.chmod(self.dir, 0o777)  # only the sandbox, not file permissions, may stop a connect
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.unix_path = os.path.join(self.dir, "host.sock")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen(8)
        self.abstract_name = f"a4ps-test-{uuid.uuid4().hex}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(8)
        self._stop = False
        for sock, kind in ((self.tcp, "tcp"), (self.unix, "unix"), (self.abstract, "abstract")):
            threading.Thread(target=self._accept, args=(sock, kind), daemon=True).start()
        threading.Thread(target=self._recv, daemon=True).start()

    def _accept(self, sock: socket.socket, kind: str) -> None:
        sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            self.hits.append(kind)
            conn.close()

    def _recv(self) -> None:
        self.udp.settimeout(0.2)
        while not self._stop:
            try:
                self.udp.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            self.hits.append("udp")

    def close(self) -> None:
        self._stop = True
        time.sleep(0.3)
        for sock in (self.tcp, self.udp, self.unix, self.abstract):
            sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def listeners():
    lst = _Listeners()
    yield lst
    lst.close()


def _assert_reported(result, *needles: str) -> None:
    """Contained means: a limit killed it, or it failed with the blocking error visible."""
    assert result.killed_reason is not None or result.exit_code != 0, result
    if result.killed_reason is None:
        assert any(n in result.stderr for n in (needles or ERRORS)), result.stderr


# --------------------------------------------------------------------------------- positive
def test_available_backends_lists_every_backend_with_a_reason():
    statuses = available_backends()
    assert [s.name for s in statuses] == list(ORDER)
    for s in statuses:
        print(f"{s.name}: {'available' if s.available else 'unavailable'} - {s.reason}")
        assert s.reason
        if s.available:
            assert any("seccomp" in e for e in s.enforced)


def test_select_backend_picks_the_strongest_available():
    first = next(s for s in available_backends() if s.available)
    assert select_backend().name == first.name
    with pytest.raises(ValueError):
        select_backend("no-such-backend")
    for s in available_backends():
        if not s.available:
            with pytest.raises(SandboxUnavailable):
                select_backend(s.name)


def test_stdin_stdout_files_round_trip(backend):
    code = (
        "import sys, helper\n"
        "data = open('data/in.txt', encoding='utf-8').read()\n"
        "print(helper.shout(sys.stdin.read()), data)\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    result = backend.run(code, files={"helper.py": "def shout(s):\n    return s.upper()\n",
                                      "data/in.txt": "héllo ✓"}, stdin="ping", limits=FAST)
    assert result.ok, result
    assert result.stdout == "PING héllo ✓\n"
    assert result.stderr == "to stderr\n"
    assert result.backend == backend.name
    assert result.duration_s > 0


def test_stdin_is_closed_unless_given_and_env_is_clean(backend, monkeypatch):
    monkeypatch.setenv("A4PS_TEST_SECRET", "x")
    result = backend.run("import os, sys\nprint(repr(sys.stdin.read()), sorted(os.environ))", limits=FAST)
    assert result.ok, result
    assert result.stdout.startswith("''")
    assert "A4PS_TEST_SECRET" not in result.stdout
    assert sorted(eval(result.stdout.split(" ", 1)[1])) == ["HOME", "LANG", "LC_ALL", "PATH", "TMPDIR"]


def test_exit_codes_and_exceptions_are_reported(backend):
    assert backend.run("raise SystemExit(3)", limits=FAST).exit_code == 3
    result = backend.run("def f():\n    raise ValueError('boom')\nf()", limits=FAST)
    assert result.exit_code == 1 and result.killed_reason is None
    assert "ValueError: boom" in result.stderr


def test_the_job_runs_as_a_script_would(backend):
    """The runner hands its interpreter to the job: the job is __main__, with its own argv and path, output
    unbuffered (kept when the job exits without flushing) and tracebacks that start at the job's code."""
    code = ("import os, sys\n"
            "print(__name__, os.path.basename(sys.argv[0]), sys.path[0] == os.getcwd(), sys.dont_write_bytecode)\n"
            "sys.stdout.write('unflushed')\n"
            "os._exit(0)\n")
    result = backend.run(code, limits=FAST)
    assert result.ok and result.stdout == "__main__ main.py True True\nunflushed", result
    failed = backend.run("def f():\n    raise ValueError('boom')\nf()", limits=FAST)
    frames = [line for line in failed.stderr.splitlines() if line.strip().startswith("File ")]
    assert frames and all(f.strip().startswith('File "') and 'main.py"' in f for f in frames), failed.stderr
    broken = backend.run("def (:\n", limits=FAST)
    assert broken.exit_code == 1 and "SyntaxError" in broken.stderr and "a4ps-runner" not in broken.stderr


def test_the_job_ends_as_the_interpreter_would(backend):
    """Exit handlers run, threads are joined and a SystemExit message is printed before the run ends —
    through Docker, where the runner's end line ends the run, too."""
    code = ("import atexit, sys, threading, time\n"
            "atexit.register(lambda: print('exit handler ran'))\n"
            "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
            "sys.exit('stopped on purpose')\n")
    result = backend.run(code, limits=FAST)
    assert result.exit_code == 1, result
    assert result.stdout == "thread done\nexit handler ran\n"
    assert result.stderr == "stopped on purpose\n"  # and no end line of the runner's


def test_a_job_that_writes_the_end_line_itself_only_ends_its_own_run(backend):
    code = ("import os, sys\nprint('before', flush=True)\n"
            "os.write(1, b'\\x00a4ps-end:0\\n'); os.write(2, b'\\x00a4ps-end:0\\n')\n"
            "import time; time.sleep(1)\nprint('after')\nsys.exit(4)\n")
    result = backend.run(code, limits=FAST)
    # Every backend ends the run at the runner's end line: as if the job had called os._exit(0).
    assert result.exit_code == 0 and result.stdout == "before\n" and result.killed_reason is None, result


def test_custom_entry_name(backend):
    result = backend.run("print(__file__)", entry="pkg/tool.py", limits=FAST)
    assert result.ok and result.stdout.strip().endswith("tool.py")


def test_bad_file_paths_are_refused(backend):
    with pytest.raises(ValueError):
        backend.run("print(1)", files={"../escape.py": "x"}, limits=FAST)
    with pytest.raises(ValueError):
        backend.run("print(1)", entry="/etc/evil.py", limits=FAST)


def test_output_is_capped_with_a_marker(backend):
    result = backend.run("import sys\nwhile True:\n    sys.stdout.write('x' * 4096)\n", limits=FAST)
    assert result.killed_reason == "output"
    assert result.stdout_truncated
    assert result.stdout.endswith(f"[output truncated at {FAST.output_bytes} bytes]")
    assert result.stdout.count("x") == FAST.output_bytes


def test_timeout_reason(backend):
    result = backend.run("import time\nprint('started', flush=True)\ntime.sleep(60)",
                         limits=Limits(wall_s=1))
    assert result.killed_reason == "timeout"
    assert result.stdout == "started\n"  # output before the kill is kept
    assert result.duration_s < 1 + backend.startup_allowance_s + 2


def test_wall_clock_kill_ignores_the_jobs_signal_handlers(backend):
    code = ("import signal, time\n"
            "for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):\n"
            "    signal.signal(s, signal.SIG_IGN)\n"
            "time.sleep(60)\n")
    result = backend.run(code, limits=Limits(wall_s=1))
    assert result.killed_reason == "timeout"
    assert result.duration_s < 1 + backend.startup_allowance_s + 3


def test_concurrent_runs_do_not_interfere(backend):
    results: dict[int, object] = {}

    def one(i: int) -> None:
        results[i] = backend.run(f"import sys\nopen('mine.txt', 'w').write('{i}')\n"
                                 f"print(open('mine.txt').read(), sys.stdin.read())",
                                 stdin=f"in{i}", limits=FAST)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: r.stdout for i, r in results.items()} == {i: f"{i} in{i}\n" for i in range(3)}


# ---------------------------------------------------------------------------------- attacks
def test_attack_payloads_work_without_a_sandbox(listeners, monkeypatch, tmp_path):
    """Control: the same payloads do reach the host when run bare, so the attack tests can fail."""
    monkeypatch.setenv("A4PS_TEST_SECRET", "visible")
    before = len(listeners.hits)
    target = tmp_path / "escaped.txt"
    code = ("import os, socket\n"
            + NET_ATTACKS["tcp"].format(tcp=listeners.tcp.getsockname()[1])
            + NET_ATTACKS["unix"].format(unix=listeners.unix_path)
            + f"open({str(target)!r}, 'w').write('escaped')\n"
            + "print(os.environ['A4PS_TEST_SECRET'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "visible" in done.stdout and target.exists()
    deadline = time.monotonic() + 3
    while len(listeners.hits) - before < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(listeners.hits[before:]) == ["tcp", "unix"]


def test_fork_bomb_is_contained(backend):
    marker = f"bomb_{uuid.uuid4().hex[:10]}"
    code = ("import os, time\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        time.sleep(0.01)\n")
    result = backend.run(code, entry=f"{marker}.py", limits=FAST)
    assert result.killed_reason in ("pids", "timeout", "cpu", "memory"), result
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == []  # nothing of the bomb outlives the run


def test_memory_hog_is_stopped(backend):
    code = "chunks = []\nwhile True:\n    chunks.append(b'x' * (16 * 1024 * 1024))\n"
    result = backend.run(code, limits=FAST)
    assert result.killed_reason == "memory", result


def test_busy_loop_hits_the_cpu_limit(backend):
    result = backend.run("while True:\n    pass\n", limits=Limits(wall_s=10, cpu_s=1))
    assert result.killed_reason == "cpu", result
    assert result.duration_s < 10


def test_cpu_limit_holds_when_sigxcpu_is_ignored(backend):
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"
    result = backend.run(code, limits=Limits(wall_s=10, cpu_s=1))
    assert result.killed_reason == "cpu", result
    assert result.duration_s < 10


def test_busy_loop_hits_the_wall_clock(backend):
    result = backend.run("while True:\n    pass\n", limits=Limits(wall_s=1, cpu_s=60))
    assert result.killed_reason == "timeout", result


def test_one_gigabyte_file_is_refused(backend):
    code = ("block = b'\\0' * (1024 * 1024)\n"
            "with open('big.bin', 'wb') as fh:\n"
            "    for _ in range(1024):\n"
            "        fh.write(block)\n"
            "print('wrote 1 GB')\n")
    result = backend.run(code, limits=FAST)
    assert result.killed_reason in ("file_size", "disk"), result
    assert "wrote 1 GB" not in result.stdout


def test_one_gigabyte_across_many_files_hits_the_scratch_limit(backend):
    code = ("block = b'x' * (1024 * 1024)\n"
            "total = 0\n"
            "for i in range(128):\n"
            "    with open(f'part{i}.bin', 'wb') as fh:\n"
            "        for _ in range(8):\n"
            "            fh.write(block)\n"
            "            total += 1\n"
            "print('wrote', total, 'MB')\n")
    result = backend.run(code, limits=Limits(wall_s=10, file_size_mb=9, scratch_mb=32))
    assert result.killed_reason in ("disk", "file_size"), result
    assert "wrote 1024 MB" not in result.stdout


NET_ATTACKS = {
    "tcp": "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\ns.settimeout(2)\n"
           "s.connect(('127.0.0.1', {tcp}))\nprint('CONNECTED')\n",
    "udp": "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
           "for _ in range(5):\n    s.sendto(b'hello', ('127.0.0.1', {udp}))\nprint('SENT')\n",
    "unix": "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\ns.settimeout(2)\n"
            "s.connect({unix!r})\nprint('CONNECTED')\n",
    "abstract": "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\ns.settimeout(2)\n"
                "s.connect('\\0' + {abstract!r})\nprint('CONNECTED')\n",
}


@pytest.mark.parametrize("kind", list(NET_ATTACKS))
def test_no_connection_reaches_host_listeners(backend, listeners, kind):
    before = len(listeners.hits)
    code = "import socket\n" + NET_ATTACKS[kind].format(
        tcp=listeners.tcp.getsockname()[1], udp=listeners.udp.getsockname()[1],
        unix=listeners.unix_path, abstract=listeners.abstract_name)
    result = backend.run(code, limits=FAST)
    time.sleep(0.3)  # let a stray datagram or connection land before looking
    assert listeners.hits[before:] == []
    assert "CONNECTED" not in result.stdout and "SENT" not in result.stdout
    _assert_reported(result)


def test_root_only_file_is_unreadable(backend):
    secret = f"root-only-{uuid.uuid4().hex}"
    folder = tempfile.mkdtemp(prefix="a4ps-secret-")
    os.chmod(folder, 0o755)  # reachable by anyone: only the file mode and the sandbox protect it
    path = os.path.join(folder, "secret.txt")
    try:
        Path(path).write_text(secret)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        result = backend.run(f"print(open({path!r}).read())", limits=FAST)
        assert secret not in result.stdout + result.stderr
        _assert_reported(result)
    finally:
        os.unlink(path)
        os.rmdir(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="a per-run uid is handed out only by root")
def test_the_job_holds_no_privilege_of_the_launcher(backend):
    # The local runner starts as root and drops to the run's uid itself: every id the run's, no
    # group of the launcher's, no capability left (a file of its own cannot be given to root).
    code = ("import os\nprint(repr((os.getresuid(), os.getresgid(), os.getgroups())))\n"
            "open('mine', 'w').close()\n"
            "try:\n    os.chown('mine', 0, 0)\nexcept PermissionError:\n    print('chown refused')\n")
    result = backend.run(code, limits=FAST)
    assert result.ok, result
    ids, chown = result.stdout.splitlines()
    uids, gids, groups = ast.literal_eval(ids)
    assert len(set(uids)) == 1 and uids[0] >= 1000 and len(set(gids)) == 1 and gids[0] >= 1000, ids
    assert set(groups) <= {gids[0]}, ids  # Docker lists the run's own group; nothing else
    assert chown == "chown refused"


def test_a_virtual_environment_over_an_unreachable_base_is_not_the_sandbox_python(monkeypatch):
    # As root, a venv's interpreter whose base lies in a private home would read root's stdlib and
    # site-packages before it drops to the run's uid; the sandbox takes another interpreter.
    from forge import sandbox

    root = Path(tempfile.mkdtemp(prefix="a4ps-venv-test-"))
    try:
        root.chmod(0o755)
        home = root / "private" / "bin"
        home.mkdir(parents=True)
        (root / "private").chmod(0o700)
        venv = root / "venv" / "bin"
        venv.mkdir(parents=True)
        shutil.copy(os.path.realpath(sys.executable), venv / "python")
        (venv.parent / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")
        monkeypatch.setenv("A4PS_SANDBOX_PYTHON", str(venv / "python"))
        monkeypatch.setattr(sandbox, "_is_root", lambda: True)
        assert sandbox._venv_home(str(venv / "python")) == str(home)
        assert sandbox._sandbox_python() != str(venv / "python")
        (root / "private").chmod(0o755)
        assert sandbox._sandbox_python() == str(venv / "python")
    finally:
        shutil.rmtree(root)


def test_environment_secret_is_invisible(backend, monkeypatch):
    secret = f"env-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("A4PS_TEST_SECRET", secret)
    result = backend.run("import os\nprint(os.environ['A4PS_TEST_SECRET'])", limits=FAST)
    assert secret not in result.stdout + result.stderr
    _assert_reported(result, "KeyError")
    # The host process's environment is also out of reach through /proc.
    result = backend.run(f"print(open('/proc/{os.getpid()}/environ', 'rb').read())", limits=FAST)
    assert secret not in result.stdout + result.stderr
    _assert_reported(result)


def test_writes_outside_scratch_are_refused(backend):
    open_dir = tempfile.mkdtemp(prefix="a4ps-open-")
    os.chmod(open_dir, 0o1777)  # world-writable: only the sandbox can stop this write
    targets = [os.path.join(open_dir, "escaped.txt"),
               f"/tmp/a4ps-escaped-{uuid.uuid4().hex}.txt",
               str(Path(__file__).resolve().parent / f"escaped-{uuid.uuid4().hex}.txt")]
    try:
        for target in targets:
            result = backend.run(f"open({target!r}, 'w').write('escaped')\nprint('WROTE')", limits=FAST)
            assert not os.path.exists(target), target
            assert "WROTE" not in result.stdout
            _assert_reported(result)
    finally:
        for target in targets:
            if os.path.exists(target):
                os.unlink(target)
        os.rmdir(open_dir)


# Signal attacks first probe with signal 0 (a permission check that delivers nothing) and stop
# with ESCAPED if it is allowed: a broken sandbox then fails the test without a real SIGKILL
# ever leaving it (kill(-1) from a job running as root would take the whole machine down).
def _signal_attack(backend, body: str):
    result = backend.run(Template(GUARD).substitute(host_pid=os.getpid()) + body, limits=FAST)
    assert "ESCAPED" not in result.stdout, result
    return result


def test_signalling_the_parent_is_contained(backend):
    result = _signal_attack(backend, "ppid = os.getppid()\n"
                                     "print('ppid', ppid, flush=True)\n"
                                     "if ppid != 1 and reachable(ppid):\n"
                                     "    print('ESCAPED', flush=True)\n"
                                     "    sys.exit(3)\n"
                                     "os.kill(ppid, signal.SIGKILL)\n"
                                     "print('sent')\n")
    if "ppid 1\n" in result.stdout and backend.name != "local":
        # The parent is the sandbox's own init (pid 1 of its pid namespace): whether the kernel
        # shields it (runc) or it dies (gVisor), the signal cannot leave the sandbox.
        assert result.killed_reason in (None, "timeout")
    else:
        _assert_reported(result, "PermissionError", "ProcessLookupError")


def test_killing_the_test_process_is_refused(backend):
    result = _signal_attack(backend, f"os.kill({os.getpid()}, signal.SIGKILL)\nprint('sent')\n")
    assert "sent" not in result.stdout
    _assert_reported(result, "PermissionError", "ProcessLookupError")


def test_kill_everything_reachable_spares_the_host(backend):
    result = _signal_attack(backend, "os.kill(-1, signal.SIGKILL)\nprint('done')\n")
    assert result.killed_reason in (None, "timeout")  # the job may kill itself, the host survives


def test_socket_creation_is_denied(backend):
    result = backend.run("import socket\nsocket.socketpair()\nsocket.socket()\n", limits=FAST)
    _assert_reported(result, "PermissionError")


# ------------------------------------------------------- IPC, datagrams and metadata (no trace left)
SYSV_ATTACK = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT = 0o1000
made = []
for name, call in (("shm", lambda: libc.shmget(0, 1 << 20, IPC_CREAT | 0o666)),
                   ("sem", lambda: libc.semget(0, 4, IPC_CREAT | 0o666)),
                   ("msg", lambda: libc.msgget(0, IPC_CREAT | 0o666))):
    ident = call()
    made.append(f"{name}={ident}/{os.strerror(ctypes.get_errno()) if ident < 0 else 'made'}")
print(" ".join(made))
"""


def test_sysv_ipc_is_denied_and_nothing_outlives_the_job(backend):
    before = sysv_objects()
    result = backend.run(SYSV_ATTACK, limits=FAST)
    assert result.exit_code == 0, result
    assert "made" not in result.stdout, result.stdout
    assert sysv_objects() - before == set()


def test_sysv_attack_works_without_a_sandbox():
    """Control: bare, the payload does create the objects (removed again here)."""
    before = sysv_objects()
    done = subprocess.run([sys.executable, "-c", SYSV_ATTACK], capture_output=True, text=True, check=False,
                          timeout=30)
    made = sysv_objects() - before
    for obj in made:
        kind, ident = obj.split(":")
        subprocess.run(["ipcrm", {"shm": "-m", "sem": "-s", "msg": "-q"}[kind], ident], check=True,
                       capture_output=True)
    assert done.stdout.count("made") == 3, done
    assert len(made) == 3


DATAGRAM_ATTACK = """import socket
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
a.connect({path!r})
a.send(b"hello")
print("SENT")
"""


def test_no_datagram_reaches_a_host_unix_socket(backend, tmp_path):
    folder = tempfile.mkdtemp(prefix="a4ps-dgram-")
    os.chmod(folder, 0o777)
    path = os.path.join(folder, "host.sock")
    host = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    host.bind(path)
    os.chmod(path, 0o777)
    host.settimeout(0.5)
    try:
        bare = subprocess.run([sys.executable, "-c", DATAGRAM_ATTACK.format(path=path)], capture_output=True,
                              text=True, check=False, timeout=30)
        assert "SENT" in bare.stdout and host.recv(100) == b"hello"  # control: the payload works bare
        result = backend.run(DATAGRAM_ATTACK.format(path=path), limits=FAST)
        assert "SENT" not in result.stdout
        with pytest.raises(TimeoutError):
            host.recv(100)
        _assert_reported(result, "PermissionError")
    finally:
        host.close()
        shutil.rmtree(folder, ignore_errors=True)


METADATA_ATTACK = """import os
path = {path!r}
for name, change in (("utime", lambda: os.utime(path)), ("utime0", lambda: os.utime(path, (0, 0))),
                     ("chmod", lambda: os.chmod(path, 0o777)),
                     ("xattr", lambda: os.setxattr(path, "user.a4ps", b"x"))):
    try:
        change()
        print("CHANGED", name)
    except OSError as exc:
        print("refused", name, type(exc).__name__)
"""


def test_host_file_metadata_is_left_alone(backend):
    folder = tempfile.mkdtemp(prefix="a4ps-meta-")
    os.chmod(folder, 0o755)
    target = Path(folder) / "shared.txt"
    target.write_text("host")
    os.chmod(target, 0o666)  # world-writable: only the sandbox, not permissions, may stop it
    os.utime(target, (1_000_000_000, 1_000_000_000))
    try:
        result = backend.run(METADATA_ATTACK.format(path=str(target)), limits=FAST)
        after = target.stat()
        assert "CHANGED" not in result.stdout, result.stdout
        assert after.st_mtime == 1_000_000_000 and stat.S_IMODE(after.st_mode) == 0o666
        try:
            assert os.listxattr(target) == []
        except OSError:
            pass  # a filesystem without xattrs cannot be changed either
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------- limits in aggregate: a cgroup per run (root hosts)
def _job_cgroups(backend) -> None:
    """Skip where the backend cannot hold a job in a cgroup of its own (not root, no cgroup fs)."""
    from forge.sandbox import _JobCgroup

    if backend.name.startswith("docker"):
        pytest.skip("the container's own cgroup limits docker jobs")
    probe = _JobCgroup.create(Limits(), None)
    if probe is None:
        pytest.skip("no cgroup per run here (needs root and a cgroup v1 or v2 hierarchy)")
    probe.remove()


SIX_HOLDING_80_MB = ("import os, time\n"
                     "kids = []\n"
                     "for i in range(6):\n"
                     "    pid = os.fork()\n"
                     "    if pid == 0:\n"
                     "        held = [bytearray(8 * 1024 * 1024) for _ in range(10)]\n"
                     "        print('holding 80 MB', flush=True)\n"
                     "        time.sleep(4)\n"
                     "        os._exit(0)\n"
                     "    kids.append(pid)\n"
                     "for pid in kids:\n"
                     "    os.waitpid(pid, 0)\n")


def test_memory_is_limited_across_all_of_a_jobs_processes(backend):
    _job_cgroups(backend)
    result = backend.run(SIX_HOLDING_80_MB, limits=Limits(wall_s=15, memory_mb=128, pids=32))
    assert result.killed_reason == "memory", result
    assert result.stdout.count("holding 80 MB") < 6  # 480 MB never existed at once under a 128 MB limit


def test_memfd_pages_count_against_the_jobs_memory(backend):
    _job_cgroups(backend)
    code = ("import os\n"
            "fds, block = [], b'x' * (1024 * 1024)\n"
            "for i in range(100):\n"
            "    fd = os.memfd_create('m')\n"
            "    for _ in range(6):\n"
            "        os.write(fd, block)\n"
            "    fds.append(fd)\n"
            "print('600 MB in memfds')\n")
    result = backend.run(code, limits=Limits(wall_s=15, memory_mb=128, open_files=256))
    assert "600 MB in memfds" not in result.stdout
    assert result.killed_reason == "memory", result


FOUR_BUSY_PROCESSES = ("import os\n"
                       "for i in range(3):\n"
                       "    if os.fork() == 0:\n"
                       "        break\n"
                       "while True:\n"
                       "    pass\n")


def test_cpu_time_is_limited_across_all_of_a_jobs_processes(backend):
    if not backend.name.startswith("docker"):  # docker: the container's cgroup, read on the host
        _job_cgroups(backend)
    started = time.monotonic()
    result = backend.run(FOUR_BUSY_PROCESSES, limits=Limits(wall_s=30, cpu_s=2))
    assert result.killed_reason == "cpu", result
    assert "together" in result.detail
    assert time.monotonic() - started < 15  # four busy processes: far less than 4 × 2 s of wall time per process


def test_inodes_in_scratch_are_capped(backend):
    code = ("import os\n"
            "made = 0\n"
            "try:\n"
            "    for i in range(200000):\n"
            "        open(f'f{i}', 'w').close()\n"
            "        made += 1\n"
            "finally:\n"
            "    print('made', made, flush=True)\n")
    result = backend.run(code, limits=Limits(wall_s=20, scratch_mb=32))
    made = int(result.stdout.split()[-1]) if result.stdout.strip() else 0
    assert made < 200000, result
    _assert_reported(result, "No space left", "OSError", "Errno 28")


def test_a_cgroup_v2_root_hands_its_controllers_down_to_the_runs(monkeypatch, tmp_path):
    from forge import sandbox as sandbox_mod

    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("cpu\n")
    parent = sandbox_mod._v2_parent(root)
    assert parent == root / "a4ps-sandbox"
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids"  # cpu was on already
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"


V2_ROOT = Path("/sys/fs/cgroup/unified")  # the unified hierarchy of a host that mounts both


@pytest.mark.skipif(not (os.geteuid() == 0 and (V2_ROOT / "cgroup.controllers").exists()),
                    reason="needs root and a cgroup v2 hierarchy at /sys/fs/cgroup/unified")
@pytest.mark.parametrize("name", ["local", "bwrap"])
def test_on_a_cgroup_v2_hierarchy_a_jobs_processes_are_held_and_ended_together(monkeypatch, name):
    from forge import sandbox as sandbox_mod

    monkeypatch.setattr(sandbox_mod, "CGROUP_ROOT", V2_ROOT)
    note = sandbox_mod._cgroup_note()
    assert note.startswith("cgroup v2 per run:") and "CPU time" in note
    backend = {"local": sandbox_mod.LocalBackend, "bwrap": sandbox_mod.BubblewrapBackend}[name]()
    if not backend.status().available:
        pytest.skip(f"{name}: {backend.status().reason}")
    started = time.monotonic()
    result = backend.run(FOUR_BUSY_PROCESSES, limits=Limits(wall_s=30, cpu_s=2))
    assert result.killed_reason == "cpu" and "together" in result.detail, result
    assert time.monotonic() - started < 15
    # A child that outlives its parent is ended with the run, and the run's cgroup is gone.
    lingering = backend.run("import os, time\nif os.fork() == 0:\n    time.sleep(60)\nprint('parent done')\n",
                            limits=FAST)
    assert lingering.ok and lingering.stdout == "parent done\n"
    assert not list((V2_ROOT / "a4ps-sandbox").glob(f"run-{os.getpid()}-*"))


NOT_ROOT_WORKER = Template("""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
from forge import sandbox
from forge.sandbox import Limits
backend = getattr(sandbox, "$backend")()
out = {"note": sandbox._cgroup_note(), "uid": os.geteuid(), "status": backend.status().reason}
if not backend.status().available:
    print("RESULT " + json.dumps(out))
    sys.exit()
started = time.monotonic()
busy = backend.run($busy, limits=Limits(wall_s=20, cpu_s=2))
out["busy"] = [busy.killed_reason, busy.detail, time.monotonic() - started]
out["own"] = open("/proc/self/cgroup").read()
if $memory:
    held = backend.run($six, limits=Limits(wall_s=15, memory_mb=128, pids=32))
    out["memory"] = [held.killed_reason, held.stdout.count("holding 80 MB")]
print("RESULT " + json.dumps(out))
""")


def _run_as_another_user(backend: str, uid: int, cgroup: Path | None, env: dict[str, str], *,
                         memory: bool = False) -> dict:
    """The sandbox used by a worker of an unprivileged uid, started in `cgroup` (by root, then dropped)."""
    import json

    def enter() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    code = NOT_ROOT_WORKER.substitute(busy=repr(FOUR_BUSY_PROCESSES), backend=backend, memory=memory,
                                      six=repr(SIX_HOLDING_80_MB))
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          env={**os.environ, "HOME": "/tmp", **env}, preexec_fn=enter, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "RESULT " in done.stdout, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1])


@pytest.mark.skipif(not (os.geteuid() == 0 and (V2_ROOT / "cgroup.controllers").exists()),
                    reason="needs root (to hand a cgroup to another uid) and a cgroup v2 hierarchy at "
                           "/sys/fs/cgroup/unified")
@pytest.mark.parametrize("backend", ["LocalBackend", "BubblewrapBackend"])
def test_not_root_a_cgroup_delegated_to_the_worker_gives_each_run_its_own(backend):
    """What `python3 a4ps.py run` arranges through systemd-run on a person's machine, done here by root:
    a cgroup v2 directory owned by the worker's uid (as Delegate=yes leaves it), A4PS_CGROUP_DELEGATED=1."""
    uid = 1_900_000_000 + os.getpid() % 100_000
    delegated = V2_ROOT / f"a4ps-test-delegated-{os.getpid()}"
    delegated.mkdir()
    try:
        for path in (delegated, *(delegated / f for f in ("cgroup.procs", "cgroup.subtree_control",
                                                          "cgroup.threads"))):
            os.chown(path, uid, uid)
        out = _run_as_another_user(backend, uid, delegated, {"A4PS_CGROUP_DELEGATED": delegated.name})
        if "busy" not in out:
            pytest.skip(f"{backend} without root: {out['status']}")
        assert out["uid"] == uid
        assert out["note"].startswith("cgroup v2 per run:") and "CPU time" in out["note"], out["note"]
        killed_reason, detail, seconds = out["busy"]
        assert killed_reason == "cpu" and "together" in detail, out["busy"]  # four processes, one budget
        assert seconds < 15
        # The worker moved into a leaf (a cgroup holding processes hands no controllers down); no run is left.
        assert f"0::/{delegated.name}/a4ps-worker\n" in out["own"]
        assert not list((delegated / "a4ps-sandbox").glob("run-*"))

        # Without the word that its cgroup is delegated, or with a word naming another cgroup (inherited
        # by a process that is not the product's), nothing is rearranged and the Forge page says why.
        for env, where in (({"A4PS_CGROUP_DELEGATED": ""}, None),
                           ({"A4PS_CGROUP_DELEGATED": "a4ps-other.scope"}, delegated / "a4ps-worker")):
            plain = _run_as_another_user(backend, uid, where, env)
            assert plain["note"].startswith("no cgroup per run (not root, and no cgroup v2 delegated"), plain
            assert plain["busy"][0] == "cpu" and "together" not in plain["busy"][1]
            assert not list((delegated / "a4ps-sandbox").glob("run-*"))
    finally:
        for path in [*sorted((p for p in delegated.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)),
                     delegated]:
            with contextlib.suppress(OSError):  # cgroup.kill: Linux 5.14
                (path / "cgroup.kill").write_text("1")
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
        shutil.rmtree(Path(tempfile.gettempdir()) / f"a4ps-sandbox-{uid}", ignore_errors=True)


V1_ROOT = Path("/sys/fs/cgroup")


@pytest.mark.skipif(not (os.geteuid() == 0 and all((V1_ROOT / c / "cgroup.procs").exists()
                                                   for c in V1_CONTROLLERS)),
                    reason="needs root (to hand cgroups to another uid) and cgroup v1 memory, pids and cpuacct "
                           "hierarchies at /sys/fs/cgroup")
@pytest.mark.parametrize("backend", ["LocalBackend", "BubblewrapBackend"])
def test_not_root_on_cgroup_v1_parents_root_hands_over_give_each_run_its_own(backend):
    """`sandbox/setup_host.sh --cgroups-for USER`, as a person's admin would run it on a cgroup v1 host."""
    uid = 1_900_100_000 + os.getpid() % 100_000
    parents = [V1_ROOT / c / f"a4ps-sandbox-{uid}" for c in V1_CONTROLLERS]
    try:
        before = _run_as_another_user(backend, uid, None, {"A4PS_CGROUP_DELEGATED": ""})
        assert before["note"].startswith("no cgroup per run (not root, and no cgroup v2 delegated"), before
        assert f"`sh sandbox/setup_host.sh --cgroups-for {uid}`" in before["note"], before["note"]

        done = subprocess.run(["sh", "sandbox/setup_host.sh", "--cgroups-for", str(uid)], capture_output=True,
                              text=True, cwd=Path(__file__).resolve().parents[2], timeout=60)
        assert done.returncode == 0 and f"uid {uid}" in done.stdout, done.stdout + done.stderr
        assert all(p.stat().st_uid == uid for p in parents)

        out = _run_as_another_user(backend, uid, None, {"A4PS_CGROUP_DELEGATED": ""}, memory=True)
        if "busy" not in out:
            pytest.skip(f"{backend} without root: {out['status']}")
        assert out["uid"] == uid
        assert out["note"].startswith("cgroup v1 per run:"), out["note"]
        killed_reason, detail, seconds = out["busy"]
        assert killed_reason == "cpu" and "together" in detail, out["busy"]  # four processes, one budget
        assert seconds < 15
        reason, holding = out["memory"]
        assert reason == "memory" and holding < 6, out["memory"]  # 480 MB never existed under 128 MB
        assert not [run for p in parents for run in p.glob("run-*")]
    finally:
        for parent in parents:
            for path in [*parent.glob("run-*"), parent]:
                for _ in range(50):
                    try:
                        path.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)
        shutil.rmtree(Path(tempfile.gettempdir()) / f"a4ps-sandbox-{uid}", ignore_errors=True)
