"""The one broadcast helper: every live update leaves the server through here."""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

log = logging.getLogger(__name__)

# Groups a page can listen to. Per-object groups are built with group_for().
EVENTS_GROUP = "events"
DASHBOARD_GROUP = "dashboard"  # run queue, persona cards, model status
RUNS_GROUP = "runs"  # rows of the runs list
MODELS_GROUP = "models"  # the Models page: loaded model, call timeline, pulls


def group_for(kind: str, pk: int | str) -> str:
    """Group name for one object, e.g. group_for("run", 12) -> "run.12"."""
    return f"{kind}.{pk}"


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _sender_loop() -> asyncio.AbstractEventLoop:
    """One event loop per process for broadcasts from synchronous code.

    The broker-backed layer keeps its connection per event loop; async_to_sync would start a
    fresh loop (and so a fresh connection) for each call from a worker thread."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="a4ps-broadcast", daemon=True).start()
        return _loop


def broadcast(group: str, type: str, **data: Any) -> None:
    """Send a message to every socket in `group`; `type` like "ui.html" selects the handler.

    Call from synchronous code, after the transaction that produced the data has committed.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": type, **data}
    # A live update is a courtesy on top of data already committed: pages catch up from the database
    # after a reconnect, so a broker that is down or slow must never fail the write that came first.
    try:
        if isinstance(layer, InMemoryChannelLayer):
            # In-process queues belong to the consumers' own loop (single-process tests).
            async_to_sync(layer.group_send)(group, message)
            return
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _sender_loop()).result(timeout=5)
    except Exception as exc:  # broker errors come as several redis/OS/timeout types
        log.warning("live update to %s not sent (%s: %s); pages catch up on reconnect", group, type, exc)
