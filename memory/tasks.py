"""Huey tasks of the memory app (thin: call a service)."""
from __future__ import annotations

import threading

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

_indexing = threading.Lock()


@db_task()
def ensure_memory_indexes() -> dict:
    """Build or rebuild the vector and full-text indexes when the tables grew enough."""
    from memory.services import memory_store

    # One build at a time per consumer; a build already under way covers this request too.
    if not _indexing.acquire(blocking=False):
        return {"changed": False, "skipped": True}
    try:
        report = memory_store().ensure_indexes()
    finally:
        _indexing.release()
    return {"changed": report.changed}


@db_periodic_task(crontab(minute="*/10"))
def ensure_memory_indexes_periodically() -> dict:
    return ensure_memory_indexes.call_local()


@db_periodic_task(crontab(minute="*"))
def save_living_image_when_due() -> str | None:
    """Save a living image every [image] interval_min minutes."""
    from memory.image import image_save_if_due

    image = image_save_if_due()
    return image.name if image else None
