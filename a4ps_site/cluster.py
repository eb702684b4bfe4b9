"""Several workers on one database and broker: who a worker is, leases on claimed work, and periodic
jobs that run once per period however many consumers fire them.

A worker is `<node>:<pid>`. The node is A4PS_NODE_NAME, else the host name: work that must not run twice
on one machine (a run, which holds a model in memory) is limited per node, and a worker's liveness can be
checked by pid only on its own node. Everything else about a dead worker is learnt from its lease.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.db import close_old_connections, connection, models
from django.utils import timezone

from a4ps_site.processes import process_start

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def node_name() -> str:
    return os.environ.get("A4PS_NODE_NAME", "").strip() or socket.gethostname()


def worker_id() -> str:
    """node:pid@start — the start time tells this process from an earlier one that had its pid (pid 1
    in a container restarted, say)."""
    start = _own_start(os.getpid())
    return f"{node_name()}:{os.getpid()}" + (f"@{start}" if start else "")


@functools.cache
def _own_start(pid: int) -> str:
    return process_start(pid)  # a process's start time never changes: read /proc once per pid


def pid_alive(pid: int, start: str = "") -> bool:
    """Whether a process of this node with this pid (and, when given, this start time) still runs."""
    if start:
        now = process_start(pid)
        if now:
            return now == start
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_gone(worker: str) -> bool:
    """A worker of this node whose process is gone; workers of other nodes are judged by their lease."""
    node, _, tail = worker.rpartition(":")
    pid, _, start = tail.partition("@")
    return node == node_name() and pid.isdigit() and not pid_alive(int(pid), start)


def claim_lock() -> None:
    """Inside a transaction: serialise claims across every worker. SQLite already does (immediate
    transactions); PostgreSQL takes a transaction-scoped advisory lock, released at commit."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [0xA4_95])


@contextlib.contextmanager
def migration_lock() -> Iterator[None]:
    """Several web processes starting at once on PostgreSQL migrate one after another (the others then
    find nothing to do). SQLite is one host's file and migrates under its own write lock.

    The lock is polled, not waited on: a session blocked inside a statement holds a snapshot, and the
    migrations' concurrent index builds would wait for it while it waits for them."""
    if connection.vendor != "postgresql":
        yield
        return
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [0xA4_96])
            if cursor.fetchone()[0]:
                break
        time.sleep(0.5)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [0xA4_96])


class LeaseKeeper(threading.Thread):
    """Renews `model` row `pk`'s lease while this worker holds it, so another can take the work over
    once the lease runs out (the holder died). Stops renewing if the row went to another worker."""

    def __init__(self, model: type[models.Model], pk: int, lease_s: int, worker: str | None = None) -> None:
        super().__init__(daemon=True, name=f"lease-{model.__name__}-{pk}")
        self.model, self.pk, self.lease_s = model, pk, lease_s
        self.worker = worker or worker_id()
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop_event.wait(max(1.0, self.lease_s / 3)):
                try:
                    self.model._default_manager.filter(pk=self.pk, worker=self.worker).update(
                        lease_until=timezone.now() + timedelta(seconds=self.lease_s))
                except Exception:  # a database blip: the next beat tries again
                    log.exception("renewing the lease of %s #%s failed", self.model.__name__, self.pk)
        finally:
            close_old_connections()

    def stop(self) -> None:
        self.stop_event.set()

    def __enter__(self) -> LeaseKeeper:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def lease_fields(lease_s: int, worker: str | None = None) -> dict[str, Any]:
    """The fields a claim sets: who holds the work and until when."""
    return {"worker": worker or worker_id(), "lease_until": timezone.now() + timedelta(seconds=lease_s)}


def abandoned(queryset: models.QuerySet) -> models.QuerySet:
    """Rows of `queryset` whose holder is gone: lease run out, no lease at all, or a dead process of
    this node (known at once, without waiting for the lease). Work this very process holds is not
    abandoned; work an earlier process with the same pid held is."""
    now = timezone.now()
    mine_dead = [w for w in set(queryset.exclude(worker="").values_list("worker", flat=True)) if worker_gone(w)]
    return queryset.filter(
        models.Q(lease_until__isnull=True) | models.Q(lease_until__lte=now) | models.Q(worker__in=mine_dead))


# --------------------------------------------------------------------------- periodic jobs, once
_client: redis.Redis | None = None
_client_lock = threading.Lock()


def _broker() -> redis.Redis:
    global _client
    with _client_lock:
        if _client is None:
            _client = redis.Redis.from_url(settings.BROKER_URL, socket_timeout=5, socket_connect_timeout=5)
        return _client


def period_start(period_s: int, now: float | None = None) -> int:
    """The start (Unix seconds) of the period `now` falls in."""
    return int((time.time() if now is None else now) // period_s) * period_s


def period_claim(name: str, period_s: int, *, now: float | None = None) -> bool:
    """Claim this period of job `name` on the shared broker: True for exactly one caller per period."""
    key = f"a4ps:periodic:{name}:{period_start(period_s, now)}"
    return bool(_broker().set(key, worker_id(), nx=True, ex=max(2 * period_s, 120)))


def once_per_period(name: str, period_s: int) -> Callable[[F], F]:
    """Decorate a periodic job so it runs once per `period_s` across every consumer that fires it
    (each Huey consumer with periodic tasks on schedules its own copy). Others return None."""

    def wrap(fn: F) -> F:
        @wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            now = time.time()
            try:
                claimed = period_claim(name, period_s, now=now)
            except redis.RedisError as exc:
                log.warning("periodic %s skipped: the broker did not answer (%s)", name, exc)
                return None
            if not claimed:
                log.info("periodic %s (period %d) ran elsewhere", name, period_start(period_s, now))
                return None
            log.info("periodic %s (period %d) runs on %s", name, period_start(period_s, now), worker_id())
            return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
