"""Huey task of fine-tune jobs (thin: take the id, call the service)."""
from __future__ import annotations

import logging
import threading

from django.db import close_old_connections
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task, on_startup

from a4ps_site.cluster import once_per_period
from memory.finetunes.services import comparison_execute, finetune_execute, finetunes_recover

log = logging.getLogger(__name__)
_recovered = threading.Lock()


@db_task()
def finetune_run(job_id: int) -> str | None:
    """Train, export and evaluate a queued fine-tune job."""
    job = finetune_execute(job_id=job_id)
    return job.status if job else None


@db_task()
def finetune_compare_run(comparison_id: int) -> str | None:
    """Ask a fine-tune's persona with its base and with its adapter."""
    comparison = comparison_execute(comparison_id=comparison_id)
    return comparison.status if comparison else None


@db_periodic_task(crontab(minute="*"))
@once_per_period("finetunes_recover", 60)
def recover_finetunes_periodically() -> int:
    """A fine-tune whose worker died (its lease ran out) starts over on another worker."""
    return finetunes_recover(requeue=finetune_run)


@on_startup()
def recover_finetunes() -> None:
    """A consumer that starts after a crash takes up the fine-tunes its dead predecessor on this node held."""
    if not _recovered.acquire(blocking=False):
        return  # once per consumer process, however many worker threads start
    try:
        finetunes_recover(requeue=finetune_run)
    except Exception:  # the database may not be migrated yet on a first start
        log.exception("could not check for interrupted fine-tunes")
    finally:
        close_old_connections()
