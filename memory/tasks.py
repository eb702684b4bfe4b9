"""Huey tasks of the memory app (thin: call a service)."""
from __future__ import annotations

import threading

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task, lock_task
from huey.exceptions import TaskLockedException

from a4ps_site.cluster import once_per_period
from memory.curator import curate
from memory.finetunes.tasks import finetune_run  # noqa: F401  (registered with Huey by being imported here)
from memory.image import image_save_if_due
from memory.services import memory_store

_indexing = threading.Lock()


@db_task()
def ensure_memory_indexes() -> dict:
    """Build or rebuild the vector and full-text indexes when the tables grew enough."""
    # One build at a time per consumer; a build already under way covers this request too.
    if not _indexing.acquire(blocking=False):
        return {"changed": False, "skipped": True}
    try:
        report = memory_store().ensure_indexes()
    finally:
        _indexing.release()
    return {"changed": report.changed}


@db_periodic_task(crontab(minute="*/10"))
@once_per_period("ensure_memory_indexes", 600)
def ensure_memory_indexes_periodically() -> dict:
    return ensure_memory_indexes.call_local()


@db_periodic_task(crontab(minute="*"))
@once_per_period("save_living_image", 60)
def save_living_image_when_due() -> str | None:
    """Save a living image every [image] interval_min minutes."""
    image = image_save_if_due()
    return image.name if image else None


# --- the strategic loop: the curator (fine-tune jobs: memory.finetunes.tasks) -------------------

@db_task()
def curate_now() -> dict[str, int]:
    """One curator pass, from the "Curate now" button."""
    return _curate()


@db_periodic_task(crontab(minute="*/10"))
@once_per_period("curate", 600)
def curate_periodically() -> dict[str, int]:
    """ALFRED judges newly finished runs every ten minutes."""
    return _curate()


def _curate() -> dict[str, int]:
    try:
        # Two passes at once would judge the same runs twice.
        with lock_task("memory-curator"):
            return curate()
    except TaskLockedException:
        return {"judged": 0, "accepted": 0, "examples": 0, "duplicates": 0, "failed": 0}
