"""The event log: every event is persisted, shown live in the system log, and handed to its subscribers.

Apps above the kernel react to events without the kernel importing them: each subscribes to the kinds
it cares about in its AppConfig.ready() (the motivator to dissonance and new tools, the dispatcher to
queued runs, the forge and the fine-tunes to their queued jobs). Handlers run after the commit that
published the event, so a handler that enqueues a job never sees a row that was rolled back.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.template.loader import render_to_string

from a4ps_site.realtime import EVENTS_GROUP, broadcast
from personas.models import Event

log = logging.getLogger(__name__)

EVENT_KIND_MAX = 64

Handler = Callable[[Event], None]
_subscribers: dict[str, list[tuple[str, Handler]]] = {}


def subscribe(kinds: Iterable[str], name: str, handler: Handler) -> None:
    """Call `handler(event)` after the commit of every event of these kinds (once per name and kind)."""
    for kind in kinds:
        handlers = [(n, h) for n, h in _subscribers.get(kind, []) if n != name]
        _subscribers[kind] = [*handlers, (name, handler)]


def subscribers(kind: str) -> list[tuple[str, Handler]]:
    return list(_subscribers.get(kind, []))


def render_event_oob(message: dict[str, Any]) -> str:
    """The log entry partial wrapped for an out-of-band prepend into #event-log."""
    event = dict(message)
    event["created"] = datetime.fromisoformat(event["created"])
    return render_to_string("personas/_event_oob.html", {"event": event})


def _deliver(name: str, handler: Handler, event: Event) -> None:
    try:
        handler(event)
    except Exception:  # one subscriber's failure must not hide the event from the others
        log.exception("event %s (%s): subscriber %s failed", event.pk, event.kind, name)


def event_publish(*, kind: str, source: str = "system", payload: dict[str, Any] | None = None) -> Event:
    """Persist an event, broadcast it to every open dashboard and notify its subscribers once the
    transaction commits."""
    kind = kind.strip()
    if not kind or len(kind) > EVENT_KIND_MAX:
        raise ValueError(f"event kind must be 1..{EVENT_KIND_MAX} characters, got {kind!r}")
    with transaction.atomic():
        event = Event.objects.create(kind=kind, source=source[:64] or "system", payload=payload or {})
        # Rendered once here rather than once per connected socket.
        html = render_event_oob(event.as_message())
        transaction.on_commit(lambda: broadcast(EVENTS_GROUP, "ui.html", html=html))
        for name, handler in subscribers(kind):
            transaction.on_commit(lambda name=name, handler=handler: _deliver(name, handler, event))
    return event
