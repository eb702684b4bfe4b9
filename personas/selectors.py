"""Reads for personas and the event log."""
from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.template.loader import render_to_string

from a4ps_site.config import persona_model
from personas.llm import model_manager
from personas.models import Event, Goal, ModelCall, Persona, Run, RunStep
from personas.ports import ports


def persona_cards() -> list[dict[str, Any]]:
    """The four personas with the model each speaks through now (and the configured one), in codex order."""
    manager: Any
    try:
        manager = model_manager()
        backend = manager.backend
    except Exception:  # a broken settings.toml is reported elsewhere; the cards still render
        manager, backend = None, ""
    cards = []
    for p in Persona.objects.all():
        configured = persona_model(p.name) or "(not configured)"
        effective = manager.resolve(p.name)[1] if manager else configured
        cards.append({"persona": p, "model": effective, "configured": configured, "backend": backend,
                      "adapter": ports().model_override(p.name)})
    return cards


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


def run_queue(*, recent: int = 5) -> dict[str, list[Run]]:
    """Runs waiting or working (in processing order) and the last few finished ones."""
    live = [Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.CANCELLING, Run.Status.WAITING]
    active = list(Run.objects.filter(status__in=live).order_by("id"))
    done = list(Run.objects.exclude(status__in=live).order_by("-id")[:recent])
    return {"active": active, "recent": done}


def runs_page(*, status: str = "", source: str = "") -> QuerySet[Run]:
    qs = Run.objects.order_by("-id")
    if status:
        qs = qs.filter(status=status)
    if source:
        qs = qs.filter(source=source)
    return qs


def run_exists(*, run_id: int) -> bool:
    return Run.objects.filter(pk=run_id).exists()


def run_detail(*, run_id: int) -> Run:
    return Run.objects.get(pk=run_id)


def run_steps(*, run: Run) -> list[RunStep]:
    return list(run.steps.order_by("seq"))


def run_budget(*, run: Run) -> dict[str, Any] | None:
    """The run's budgets as its latest step recorded them (None before the first step)."""
    for step in run.steps.order_by("-seq")[:5]:
        if isinstance(step.data, dict) and step.data.get("budget"):
            return dict(step.data["budget"])
    return None


def run_steps_html_after(*, run_id: int, after_seq: int) -> list[str]:
    """Steps a reconnecting run page missed, rendered as they were broadcast, plus the current header."""
    steps = RunStep.objects.filter(run_id=run_id, seq__gt=after_seq).order_by("seq")
    html = [render_to_string("personas/_run_step_oob.html", {"step": s}) for s in steps]
    html.append(render_to_string("personas/_run_head_oob.html", {"run": Run.objects.get(pk=run_id)}))
    return html


def model_status() -> dict[str, Any]:
    """The latest loaded/unloaded report of the worker's ModelManager ({} before the first call)."""
    try:
        return json.loads((settings.SHARED_DIR / "model_status.json").read_text())
    except (OSError, ValueError):
        return {}


def model_calls_recent(*, limit: int = 30) -> list[ModelCall]:
    return list(ModelCall.objects.order_by("-id")[:limit])


def goals_recent(*, limit: int = 8) -> list[Goal]:
    return list(Goal.objects.select_related("run").order_by("-id")[:limit])
