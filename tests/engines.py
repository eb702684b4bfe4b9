"""Real engines for scale-out tests and benches: a private PostgreSQL cluster in a temporary directory
(Debian's `postgresql`, run as an unprivileged user) and a valkey on a TCP port with a password.

Both are started and stopped by the caller; `postgres_missing()` / `valkey_missing()` say why one cannot
start here, so tests skip with that reason.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from a4ps_site import broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def postgres_missing() -> str:
    """Why a private PostgreSQL cluster cannot start here ("" when it can)."""
    if _pg_bin() is None:
        return "PostgreSQL is not installed (as root the test command installs Debian's postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            return "running as root without a 'nobody' user to run PostgreSQL as"
    return ""


@dataclass
class Postgres:
    root: Path
    port: int
    proc_env: dict

    @property
    def url(self) -> str:
        return f"postgres://a4ps@127.0.0.1:{self.port}/a4ps"

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(_as_owner([str(c) for c in cmd]), env=self.proc_env, capture_output=True, text=True,
                              check=check, timeout=120, stdin=subprocess.DEVNULL)

    def psql(self, sql: str, db: str = "a4ps") -> str:
        out = self._run(str(_pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "a4ps", "-d", db,
                        "-At", "-c", sql)
        return out.stdout

    def stop(self) -> None:
        self._run(str(_pg_bin() / "pg_ctl"), "-D", str(self.root / "data"), "stop", "-m", "immediate", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: then it runs as `nobody`."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]


def start_postgres() -> Postgres:
    """initdb a cluster in a temporary directory, start it on a free TCP port (trust, loopback only) and
    create the `a4ps` database owned by the `a4ps` superuser."""
    bin_dir = _pg_bin()
    assert bin_dir is not None, postgres_missing()
    root = Path(tempfile.mkdtemp(prefix="a4ps-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "HOME": str(root)}
    pg = Postgres(root=root, port=free_port(), proc_env=env)
    try:
        pg._run(str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "a4ps", "-A", "trust", "-E", "UTF8")
        options = (f"-p {pg.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        pg._run(str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-o", options, "-l", str(root / "log"), "-w",
                "start")
        pg._run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "a4ps", "a4ps")
    except subprocess.CalledProcessError as exc:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        pg.stop()
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{log}") from None
    return pg


def valkey_missing() -> str:
    try:
        broker.valkey_binary()
    except broker.BrokerError as exc:
        return str(exc)
    return ""


@dataclass
class Valkey:
    proc: subprocess.Popen
    port: int
    password: str
    root: Path

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_valkey() -> Valkey:
    """A valkey on a loopback TCP port that demands a password, as a shared deployment's broker."""
    root = Path(tempfile.mkdtemp(prefix="a4ps-valkey-"))
    port, password = free_port(), secrets.token_hex(12)
    proc = subprocess.Popen(
        [str(broker.valkey_binary()), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
         "--dir", str(root), "--save", "", "--appendonly", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    valkey = Valkey(proc=proc, port=port, password=password, root=root)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if broker.ping(valkey.url):
            return valkey
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    valkey.stop()
    raise RuntimeError("valkey did not answer on its TCP port")
