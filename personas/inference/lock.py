"""Cross-process lock that serialises model use, on the broker when there is one, else on a file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import ModelLockTimeout

LOCK_NAME = "a4ps:model-lock"


class FileModelLock:
    """fcntl.flock on a file under var_dir: works across processes on one host, released on crash."""

    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"file lock {self.path}"

    def busy(self) -> bool:
        """Whether someone holds the model right now (a glance, not a reservation)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def hold(self, *, wait_s: float | None = None) -> Iterator[None]:
        # A fresh descriptor per hold: flock is per open file description, so two threads of one
        # process exclude each other exactly like two processes do.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if wait_s is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + wait_s
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise ModelLockTimeout(
                                f"Another process has been using the model for more than {wait_s:.0f}s "
                                f"({self.describe()}); try again later."
                            ) from None
                        time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class BrokerModelLock:
    """redis-py Lock on the shared broker, so workers on several hosts serialise too.

    The key expires (`lease_s`) so a killed holder cannot wedge everyone; while the call runs a
    small thread keeps renewing the lease, because a long generation must not lose the lock.
    """

    kind = "broker"

    def __init__(self, url: str, *, name: str = LOCK_NAME, lease_s: float = 30.0) -> None:
        import redis  # local: only needed when a broker is configured

        self.url = url
        self.name = name
        self.lease_s = lease_s
        self._client = redis.Redis.from_url(url)

    def describe(self) -> str:
        return f"broker lock {self.name!r} on {self.url}"

    def reachable(self) -> bool:
        """Whether the broker answers: while it does not, every call through this lock fails."""
        from a4ps_site.broker import ping

        return ping(self.url)

    def busy(self) -> bool:
        """Whether someone holds the model right now (a glance, not a reservation)."""
        try:
            return bool(self._client.exists(self.name))
        except Exception:  # the broker is unreachable: the call itself will say so
            return False

    @contextlib.contextmanager
    def hold(self, *, wait_s: float | None = None) -> Iterator[None]:
        lock = self._client.lock(
            self.name,
            timeout=self.lease_s,
            sleep=0.05,
            blocking=True,
            blocking_timeout=wait_s,
            thread_local=False,
        )
        # A unique token also lets an operator see who holds it with GET.
        token = f"{os.getpid()}:{uuid.uuid4().hex}".encode()
        if not lock.acquire(token=token):
            raise ModelLockTimeout(
                f"Another process has been using the model for more than {wait_s:.0f}s "
                f"({self.describe()}); try again later."
            )
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease_s / 3):
                try:
                    lock.reacquire()
                except Exception:  # the broker blipped; the next tick tries again
                    pass

        renewer = threading.Thread(target=renew, name="model-lock-renew", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            with contextlib.suppress(Exception):
                lock.release()


def make_lock(*, var_dir: Path, lock_url: str | None) -> FileModelLock | BrokerModelLock:
    """The broker lock when a broker URL is given (redis://, rediss://, unix://), else a file lock."""
    if lock_url:
        return BrokerModelLock(lock_url)
    return FileModelLock(Path(var_dir) / "locks" / "model.lock")
