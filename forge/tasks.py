"""Huey tasks of the forge app (thin: take ids, call a service)."""
from __future__ import annotations

import logging
import threading

from django.db import close_old_connections
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task, on_startup

from a4ps_site.cluster import LeaseKeeper, lease_fields, once_per_period
from forge import services
from forge.evals.tasks import eval_run  # noqa: F401  (registered with Huey by being imported here)
from forge.models import ForgeRequest
from personas.runner import lease_seconds


@db_task()
def sandbox_selftest_run() -> str:
    """The sandbox self-test a person started from the Forge page."""
    return str(services.selftest_execute().get("status"))


@db_task()
def forge_request_run(request_id: int) -> str | None:
    """Forge the tool a person asked for on the Forge page."""
    request = ForgeRequest.objects.filter(pk=request_id, status=ForgeRequest.Status.QUEUED).first()
    if request is None:
        return None  # gone, or another worker already took it
    # Claim it: only the worker whose update matched runs the loop; its lease is renewed while it does.
    lease = lease_fields(lease_seconds())
    if not ForgeRequest.objects.filter(pk=request_id, status=ForgeRequest.Status.QUEUED).update(
            status=ForgeRequest.Status.RUNNING, **lease):
        return None
    with LeaseKeeper(ForgeRequest, request_id, lease_seconds(), worker=lease["worker"]):
        return services.forge_request_execute(request=request).status


@db_periodic_task(crontab(minute="*"))
@once_per_period("forge_requests_recover", 60)
def recover_forge_requests_periodically() -> dict[str, int]:
    """A person's forge request whose worker died (its lease ran out) is queued again on another."""
    return services.forge_requests_recover(requeue=forge_request_run)


_recovered = threading.Lock()
log = logging.getLogger(__name__)


@on_startup()
def recover_forge_requests() -> None:
    """A consumer that starts after a crash takes up the forge requests its predecessor left running."""
    if not _recovered.acquire(blocking=False):
        return  # once per consumer process, however many worker threads start
    try:
        services.forge_requests_recover(requeue=forge_request_run)
    except Exception:  # the database may not be migrated yet on a first start
        log.exception("could not check for interrupted forge requests")
    finally:
        close_old_connections()


_pool_started = threading.Lock()


@on_startup()
def warm_sandbox_pool() -> None:
    """Start the warm pool of the sandbox backend in use (forge.warm_pool), once per consumer process."""
    if not _pool_started.acquire(blocking=False):
        return
    try:
        services.sandbox_pool_start()
    except Exception:  # a pool that cannot start leaves cold starts, which always work
        log.exception("could not start the sandbox's warm pool")
