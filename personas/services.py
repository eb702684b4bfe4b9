"""Writes for personas and the event log."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.template.loader import render_to_string

from a4ps_site.config import PersonaSpec, codex
from a4ps_site.realtime import EVENTS_GROUP, broadcast
from personas.models import Event, Persona

EVENT_KIND_MAX = 64


def render_event_oob(message: dict) -> str:
    """The log entry partial wrapped for an out-of-band prepend into #event-log."""
    event = dict(message)
    event["created"] = datetime.fromisoformat(event["created"])
    return render_to_string("personas/_event_oob.html", {"event": event})


def event_publish(*, kind: str, source: str = "system", payload: dict[str, Any] | None = None) -> Event:
    """Persist an event and broadcast it to every open dashboard once the transaction commits."""
    kind = kind.strip()
    if not kind or len(kind) > EVENT_KIND_MAX:
        raise ValueError(f"event kind must be 1..{EVENT_KIND_MAX} characters, got {kind!r}")
    with transaction.atomic():
        event = Event.objects.create(kind=kind, source=source[:64] or "system", payload=payload or {})
        # Rendered once here rather than once per connected socket.
        html = render_event_oob(event.as_message())
        transaction.on_commit(lambda: broadcast(EVENTS_GROUP, "event.created", html=html))
    return event


@transaction.atomic
def persona_sync_from_codex(*, specs: dict[str, PersonaSpec] | None = None) -> list[Persona]:
    """Create or update the Persona rows from the codex; live state is kept."""
    specs = specs if specs is not None else codex()
    personas = []
    for spec in specs.values():
        persona, _ = Persona.objects.update_or_create(
            name=spec.name,
            defaults={
                "order": spec.order,
                "role": spec.role,
                "title": spec.title,
                "system_prompt": spec.system_prompt,
                "principles": list(spec.principles),
            },
        )
        personas.append(persona)
    return personas
