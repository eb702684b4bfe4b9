"""The one broadcast helper: every live update leaves the server through here."""
from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

# Groups a page can listen to. Per-object groups are built with group_for().
EVENTS_GROUP = "events"
DASHBOARD_GROUP = "dashboard"  # run queue, persona cards, model status
RUNS_GROUP = "runs"  # rows of the runs list
MODELS_GROUP = "models"  # the Models page: loaded model, call timeline, pulls


def group_for(kind: str, pk: int | str) -> str:
    """Group name for one object, e.g. group_for("run", 12) -> "run.12"."""
    return f"{kind}.{pk}"


def broadcast(group: str, type: str, **data: Any) -> None:
    """Send a message to every socket in `group`; `type` like "event.created" selects the handler.

    Call from synchronous code, after the transaction that produced the data has committed.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(group, {"type": type, **data})


async def abroadcast(group: str, type: str, **data: Any) -> None:
    """The same as broadcast(), for async callers."""
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(group, {"type": type, **data})
