"""Reads for personas and the event log."""
from __future__ import annotations

from django.db.models import QuerySet

from a4ps_site.config import persona_model
from personas.models import Event, Persona


def persona_cards() -> list[dict]:
    """The four personas with their configured model, in codex order."""
    return [
        {"persona": p, "model": persona_model(p.name) or "(not configured)"}
        for p in Persona.objects.all()
    ]


def events_recent(*, limit: int = 50) -> list[Event]:
    return list(Event.objects.order_by("-id")[:limit])


def events_after(*, after_id: int, limit: int = 200) -> list[Event]:
    """Events newer than `after_id`, oldest first (for a reconnecting page to catch up)."""
    return list(Event.objects.filter(id__gt=after_id).order_by("id")[:limit])


def events_page(*, kind: str = "") -> QuerySet[Event]:
    qs = Event.objects.order_by("-id")
    if kind:
        qs = qs.filter(kind=kind)
    return qs
