"""Huey tasks of the personas app (thin: call a service)."""
from __future__ import annotations

from typing import Any

from huey.contrib.djhuey import db_task

from personas.services import event_publish


@db_task(retries=2, retry_delay=1)
def publish_event(kind: str, source: str = "worker", payload: dict[str, Any] | None = None) -> int:
    """Publish an event from the worker process (used at start-up and by scripts)."""
    return event_publish(kind=kind, source=source, payload=payload).pk
