"""The motivator: turns events (high dissonance, a new tool, idle time) into goals of the system's own."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.template.loader import render_to_string
from django.utils import timezone

from a4ps_site.config import ConfigError, app_settings
from a4ps_site.realtime import DASHBOARD_GROUP, broadcast
from personas.events import event_publish
from personas.models import Event, Goal, Run
from personas.ports import ports
from personas.runs import run_submit
from personas.selectors import goals_recent

TRIGGERS = {"high_cognitive_dissonance": Goal.Kind.SYNTHESIS, "tool_created": Goal.Kind.EXPLORATION}


def motivator_settings() -> dict[str, Any]:
    data = {"autonomy": "ask", "curiosity_interval_min": 30, "max_goals_per_hour": 6, "cooldown_min": 10,
            **app_settings().get("motivator", {})}
    if data["autonomy"] not in {"ask", "auto"}:
        raise ConfigError(f"motivator.autonomy={data['autonomy']!r} must be 'ask' or 'auto'")
    return data


def _rate_limited(kind: str, conf: dict[str, Any]) -> str | None:
    now = timezone.now()
    if Goal.objects.filter(created__gte=now - timedelta(hours=1)).count() >= conf["max_goals_per_hour"]:
        return f"the limit of {conf['max_goals_per_hour']} goals an hour is reached"
    if Goal.objects.filter(kind=kind, created__gte=now - timedelta(minutes=conf["cooldown_min"])).exists():
        return f"a {kind} goal was set less than {conf['cooldown_min']} minutes ago"
    return None


def _goal_text(kind: str, event: Event | None) -> str:
    payload = (event.payload if event else {}) or {}
    if kind == Goal.Kind.SYNTHESIS:
        run = Run.objects.filter(pk=payload.get("run")).first()
        task = run.task[:300] if run else "an earlier task"
        return (f"BRICK and ROBIN disagreed strongly (dissonance {payload.get('score', 0):.2f}) on: “{task}”. "
                "Look for a synthesis both could accept, and say what each view gets right.")
    if kind == Goal.Kind.EXPLORATION:
        others = [t["function"]["name"] for t in ports().tool_schemas()
                  if t.get("function", {}).get("name") != payload.get("tool")]
        with_what = f" together with {', '.join(others[:3])}" if others else ""
        return (f"A new tool exists: {payload.get('tool', 'a new tool')}. Design and solve a small problem that "
                f"uses it{with_what}, to learn what it is good for.")
    recent = list(Run.objects.filter(status=Run.Status.DONE).order_by("-id").values_list("task", flat=True)[:5])
    listing = "; ".join(f"“{t[:80]}”" for t in recent) or "no finished runs yet"
    return (f"Self-reflection: looking at recent work ({listing}), what patterns, mistakes or open questions "
            "stand out, and what should the team learn next?")


def _broadcast_goals() -> None:
    html = render_to_string("personas/_goals.html", {"goals": goals_recent(), "oob": True})
    broadcast(DASHBOARD_GROUP, "ui.html", html=html)


@transaction.atomic
def goal_create(*, kind: str, event: Event | None = None) -> Goal | None:
    """Set a goal unless the rate limits say no; with autonomy = auto it is queued as a run at once."""
    conf = motivator_settings()
    if _rate_limited(kind, conf):
        return None
    try:
        with transaction.atomic():
            goal = Goal.objects.create(kind=kind, text=_goal_text(kind, event), source_event=event)
    except IntegrityError:
        return None  # this event already produced its goal
    if conf["autonomy"] == "auto":
        goal.run = run_submit(task=goal.text, source=Run.Source.MOTIVATOR)
        goal.status = Goal.Status.QUEUED
        goal.decided_at = timezone.now()
        goal.save()
    event_publish(kind="goal.created", source="motivator", payload={
        "goal": goal.pk, "kind": kind,
        "message": f"New {kind} goal" + (" queued" if goal.run else " awaiting approval") + f": {goal.text[:100]}"})
    transaction.on_commit(_broadcast_goals)
    return goal


def goal_from_event(*, event: Event) -> Goal | None:
    """The motivator's event handler."""
    kind = TRIGGERS.get(event.kind)
    if kind is None:
        return None
    if kind == Goal.Kind.SYNTHESIS:
        run = Run.objects.filter(pk=(event.payload or {}).get("run")).first()
        if run and run.source == Run.Source.MOTIVATOR:
            return None  # its own goals' disagreements would feed back into more goals
    return goal_create(kind=kind, event=event)


def goal_reflect_if_idle(*, now=None) -> Goal | None:
    """Idle longer than the curiosity interval (no run started or finished) → a self-reflection goal."""
    conf = motivator_settings()
    now = now or timezone.now()
    if Run.objects.filter(status__in=[Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.WAITING]).exists():
        return None
    last = Run.objects.aggregate(created=Max("created"), finished=Max("finished"))
    last_activity = max([t for t in last.values() if t] or [None], default=None)
    idle_since = timedelta(minutes=conf["curiosity_interval_min"])
    if last_activity is None or now - last_activity < idle_since:
        return None
    if Goal.objects.filter(kind=Goal.Kind.REFLECTION, created__gte=now - idle_since).exists():
        return None
    return goal_create(kind=Goal.Kind.REFLECTION)


@transaction.atomic
def goal_approve(*, goal: Goal) -> Goal:
    goal = Goal.objects.select_for_update().get(pk=goal.pk)
    if goal.status != Goal.Status.PROPOSED:
        raise ValueError(f"Goal #{goal.pk} is already {goal.status}.")
    goal.run = run_submit(task=goal.text, source=Run.Source.MOTIVATOR)
    goal.status = Goal.Status.QUEUED
    goal.decided_at = timezone.now()
    goal.save()
    transaction.on_commit(_broadcast_goals)
    return goal


@transaction.atomic
def goal_dismiss(*, goal: Goal) -> Goal:
    goal = Goal.objects.select_for_update().get(pk=goal.pk)
    if goal.status != Goal.Status.PROPOSED:
        raise ValueError(f"Goal #{goal.pk} is already {goal.status}.")
    goal.status = Goal.Status.DISMISSED
    goal.decided_at = timezone.now()
    goal.save()
    transaction.on_commit(_broadcast_goals)
    return goal
