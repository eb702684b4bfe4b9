"""A deployment of several processes on real engines, for the scale-out test and bench: PostgreSQL, a
password-protected valkey on TCP, web processes (`manage.py up --role web`) and Huey consumers that speak
through the scripted model, each with its own var/ and all sharing one A4PS_SHARED_DIR.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.engines import Postgres, Valkey, free_port, start_postgres, start_valkey
from tests.livestack import ADMIN_PASSWORD, ADMIN_USER

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Process:
    name: str
    proc: subprocess.Popen
    log_path: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Deployment:
    pg: Postgres
    valkey: Valkey
    root: Path
    env: dict
    webs: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    token: str = ""

    def _spawn(self, name: str, cmd: list[str], **env: str) -> Process:
        var = self.root / name
        var.mkdir(parents=True, exist_ok=True)
        log_path = var / "process.log"
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, "A4PS_VAR_DIR": str(var), "A4PS_NODE_NAME": name,
                                                      **env},
                                stdout=log_path.open("a"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        return Process(name=name, proc=proc, log_path=log_path)

    def start_web(self, name: str) -> Process:
        port = free_port()
        web = self._spawn(name, [sys.executable, "manage.py", "up", "--role", "web"], A4PS_PORT=str(port))
        web.port = port
        self.webs.append(web)
        return web

    def start_worker(self, name: str, delay_s: float = 0.0) -> Process:
        worker = self._spawn(name, [sys.executable, "-m", "tests.scripted_worker"], SCRIPTED_DELAY=str(delay_s))
        self.workers.append(worker)
        return worker

    def wait_running(self, process: Process, marker: str = "A4PS is running", timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in process.log():
                return
            if process.proc.poll() is not None:
                raise RuntimeError(f"{process.name} exited with {process.proc.returncode}:\n{process.log()[-4000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"{process.name} did not start within {timeout}s:\n{process.log()[-4000:]}")

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
                              env={**self.env, "A4PS_VAR_DIR": str(self.root / "cli")}, timeout=120, check=True)
        return done.stdout

    def api(self, web: Process, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            web.url + path, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def sql(self, query: str) -> list[list[str]]:
        out = self.pg.psql(query)
        return [line.split("|") for line in out.splitlines() if line]

    def kill(self, process: Process, sig: int = signal.SIGKILL) -> None:
        if process.proc.poll() is None:
            os.killpg(process.proc.pid, sig)
            process.proc.wait()

    def stop(self) -> None:
        for process in [*self.workers, *self.webs]:
            if process.proc.poll() is None:
                os.killpg(process.proc.pid, signal.SIGTERM)
        for process in [*self.workers, *self.webs]:
            try:
                process.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.proc.pid, signal.SIGKILL)
                process.proc.wait()
        self.valkey.stop()
        self.pg.stop()
        if not os.environ.get("A4PS_KEEP_SCALE_LOGS"):  # set it to read every process's log after a failure
            shutil.rmtree(self.root, ignore_errors=True)


def _config(folder: Path, lease_s: int) -> None:
    """The shipped config/, with a short lease (so a killed worker's work moves on quickly) and the
    local sandbox without a warm pool (no Docker needed)."""
    shutil.copytree(ROOT / "config", folder)
    path = folder / "settings.toml"
    text = path.read_text()
    text = re.sub(r"(?m)^lease_s = \d+", f"lease_s = {lease_s}", text)
    text = re.sub(r'(?m)^backend = "auto"', 'backend = "local"', text)
    text = re.sub(r"(?m)^warm_pool = \d+", "warm_pool = 0", text)
    path.write_text(text)


def deploy(*, lease_s: int = 8) -> Deployment:
    """PostgreSQL, valkey and the environment every process shares; processes are started by the caller."""
    pg = start_postgres()
    try:
        valkey = start_valkey()
    except Exception:
        pg.stop()
        raise
    root = Path(tempfile.mkdtemp(prefix="a4ps-scale-"))
    _config(root / "config", lease_s)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("A4PS_", "DJANGO_SETTINGS", "PYTEST_"))}
    env.update(
        DATABASE_URL=pg.url, REDIS_URL=valkey.url, A4PS_SHARED_DIR=str(root / "shared"),
        A4PS_CONFIG_DIR=str(root / "config"), A4PS_ADMIN_USER=ADMIN_USER, A4PS_ADMIN_PASSWORD=ADMIN_PASSWORD,
        A4PS_HUEY_WORKERS="2", DJANGO_SETTINGS_MODULE="a4ps_site.settings", PYTHONUNBUFFERED="1",
    )
    return Deployment(pg=pg, valkey=valkey, root=root, env=env)


class SocketWatcher(threading.Thread):
    """A logged-in websocket client on one web process: by default on a run's page, where every step it
    was sent (live or replayed after connecting) is kept by its sequence number; with `path`, any page's
    socket, whose messages are kept as they came."""

    def __init__(self, web: Process, cookie: str, run_id: int = 0, path: str = "") -> None:
        super().__init__(daemon=True)
        self.web, self.cookie, self.run_id = web, cookie, run_id
        self.path = path or f"/ws/runs/{run_id}/"
        self.messages: list[str] = []
        self.seqs: set[int] = set()
        self.live: set[int] = set()  # of those, the ones that arrived as they happened
        self.error = ""
        self.stop_event = threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        from websockets.sync.client import connect

        url = f"ws://127.0.0.1:{self.web.port}{self.path}"
        try:
            with connect(url, additional_headers={"Cookie": self.cookie, "Origin": self.web.url},
                         open_timeout=20) as ws:
                self.connected.set()
                ws.send(json.dumps({"resume_after": 0}))  # what happened before this socket opened
                replaying = True
                while not self.stop_event.is_set():
                    try:
                        message = ws.recv(timeout=0.5)
                    except TimeoutError:
                        replaying = False
                        continue
                    self.messages.append(str(message))
                    seqs = {int(s) for s in re.findall(r'<li id="step-\d+-\d+"[^>]* data-seq="(\d+)"', str(message))}
                    self.seqs |= seqs
                    if not replaying:
                        self.live |= seqs
        except Exception as exc:  # reported by the test
            self.error = f"{type(exc).__name__}: {exc}"
            self.connected.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)


def login_cookie(web: Process) -> str:
    """Log in through the real login form of `web`; returns the Cookie header value."""
    import http.cookiejar
    import urllib.parse

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(web.url + "/accounts/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"username": ADMIN_USER, "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": token})
    opener.open(urllib.request.Request(web.url + "/accounts/login/", data=data.encode(),
                                       headers={"Referer": web.url + "/"})).read()
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def periodic_runs(logs: list[str]) -> dict[tuple[str, int], list[str]]:
    """Which worker ran each periodic job in each period, from the workers' logs."""
    found: dict[tuple[str, int], list[str]] = {}
    for text in logs:
        for name, period, worker in re.findall(r"periodic (\S+) \(period (\d+)\) runs on (\S+)", text):
            found.setdefault((name, int(period)), []).append(worker)
    return found


def periodic_copies(logs: list[str], name: str) -> dict[int, int]:
    """How many copies of job `name` were executed per period, across the workers' logs (each consumer's
    scheduler enqueues its own copy on the shared queue; any consumer may execute it)."""
    counts: dict[int, int] = {}
    for text in logs:
        for period in re.findall(rf"periodic {re.escape(name)} \(period (\d+)\) (?:runs on|ran elsewhere)", text):
            counts[int(period)] = counts.get(int(period), 0) + 1
    return counts
