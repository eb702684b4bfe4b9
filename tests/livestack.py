"""Starts the real run command (`manage.py up`) in a scratch var/ for integration tests and benches."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADMIN_USER = "stackadmin"
ADMIN_PASSWORD = "stack-password-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveStack:
    var_dir: Path
    port: int
    proc: subprocess.Popen
    log_path: Path
    env: dict = field(default_factory=dict)
    workers: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def broker_url(self) -> str:
        return f"unix://{self.var_dir / 'broker.sock'}"

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a manage.py command against this stack's database and broker."""
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
            timeout=timeout, check=True,
        )

    def publish_from_worker(self, kind: str, message: str) -> None:
        """Enqueue the publish_event task; the stack's Huey consumer runs it."""
        code = (
            "from personas.tasks import publish_event; "
            f"publish_event({kind!r}, 'test', {{'message': {message!r}}})"
        )
        self.manage("shell", "-c", code)

    def start_worker(self, module: str = "tests.scripted_worker", **env: str) -> subprocess.Popen:
        """Start an extra Huey consumer process (e.g. one with a scripted model) on this stack."""
        log = (self.var_dir / f"worker-{len(self.workers)}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env={**self.env, **env}, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def db(self):
        """A read-only connection to the stack's SQLite database."""
        import sqlite3

        return sqlite3.connect(f"file:{self.var_dir / 'a4ps.sqlite3'}?mode=ro", uri=True, timeout=10)

    def submit(self, task: str) -> int:
        out = self.manage("shell", "-c", f"from personas.runs import run_submit; print(run_submit(task={task!r}).pk)")
        return int(out.stdout.strip().splitlines()[-1])

    def wait_for(self, sql: str, params: tuple = (), *, timeout: float = 120, until=bool):
        """Poll a query against the stack's database until `until(row)` holds; returns the row."""
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            with self.db() as conn:
                row = conn.execute(sql, params).fetchone()
            if row is not None and until(row):
                return row
            time.sleep(0.2)
        raise TimeoutError(f"{sql} {params}: last row {row}\n{self.log()[-3000:]}")

    def login_cookie(self, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> str:
        """Log in through the real login form; returns the Cookie header value."""
        import http.cookiejar
        import re
        import urllib.parse
        import urllib.request

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(self.url + "/accounts/login/").read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
        req = urllib.request.Request(self.url + "/accounts/login/", data=data.encode(),
                                     headers={"Referer": self.url + "/"})
        opener.open(req).read()
        return "; ".join(f"{c.name}={c.value}" for c in jar)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def clean_env() -> dict[str, str]:
    """This process's environment without the product's settings: a product process started with it
    reads only what it is given (its own var/, SQLite database and embedded broker)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("A4PS_", "DJANGO_SETTINGS")) and k not in ("DATABASE_URL", "REDIS_URL")}


def start_stack(var_dir: Path | None = None, *, extra_env: dict | None = None, timeout: float = 120,
                args: tuple[str, ...] = ()) -> LiveStack:
    """Start `manage.py up` and wait for its "running" line; raises with the log on failure (a scratch
    var/ it made itself is removed then)."""
    if var_dir is not None:
        return _start_in(var_dir, extra_env, timeout, args)
    # Unix socket paths are limited to ~108 bytes: keep the scratch dir short.
    scratch = Path(tempfile.mkdtemp(prefix="a4ps-stack-"))
    try:
        return _start_in(scratch, extra_env, timeout, args)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _start_in(var_dir: Path, extra_env: dict | None, timeout: float, args: tuple[str, ...]) -> LiveStack:
    port = free_port()
    env = clean_env()
    env.update(
        A4PS_VAR_DIR=str(var_dir),
        A4PS_PORT=str(port),
        A4PS_ADMIN_USER=ADMIN_USER,
        A4PS_ADMIN_PASSWORD=ADMIN_PASSWORD,
        A4PS_HUEY_WORKERS="2",
        DJANGO_SETTINGS_MODULE="a4ps_site.settings",
        PYTHONUNBUFFERED="1",
    )
    # The stack gets its own copy of config/: approving an amendment rewrites codex.toml.
    config = var_dir / "config"
    if not config.exists():
        shutil.copytree(ROOT / "config", config)
    env["A4PS_CONFIG_DIR"] = str(config)
    env.update(extra_env or {})
    log_path = var_dir / "stack.log"
    with log_path.open("w") as log:  # the child writes through its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "up", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    stack = LiveStack(var_dir=var_dir, port=port, proc=proc, log_path=log_path, env=env)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "A4PS is running" in stack.log():
                return stack
            if proc.poll() is not None:
                raise RuntimeError(f"manage.py up exited with {proc.returncode}:\n{stack.log()}")
            time.sleep(0.2)
        raise RuntimeError(f"manage.py up did not come up within {timeout}s:\n{stack.log()}")
    except BaseException:
        stack.stop()
        raise


def cleanup(stack: LiveStack) -> None:
    stack.stop()
    shutil.rmtree(stack.var_dir, ignore_errors=True)
