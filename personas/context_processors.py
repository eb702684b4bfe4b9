"""What every page needs: the "needs you" list in the navigation."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from personas.models import CodexAmendment, Goal, Run
from personas.ports import ports


def waiting_for_a_person() -> list[dict[str, Any]]:
    """Decisions only a person can make, each with how many and where to make them."""
    items = []
    amendments = CodexAmendment.objects.filter(status=CodexAmendment.Status.PROPOSED).count()
    if amendments:
        waiting_runs = Run.objects.filter(status=Run.Status.WAITING).count()
        items.append({"label": f"codex amendment{'s' if amendments != 1 else ''} to approve or reject"
                      + (f" ({waiting_runs} run{'s' if waiting_runs != 1 else ''} waiting)" if waiting_runs else ""),
                      "count": amendments, "url": reverse("admin:personas_codexamendment_changelist") +
                      "?status__exact=proposed"})
    goals = Goal.objects.filter(status=Goal.Status.PROPOSED).count()
    if goals:
        items.append({"label": f"goal{'s' if goals != 1 else ''} to run or dismiss", "count": goals,
                      "url": reverse("dashboard") + "#goals"})
    return items + list(ports().waiting_for_a_person())


def needs_you(request: HttpRequest) -> dict[str, Any]:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    items = waiting_for_a_person()
    return {"needs_you": items, "needs_you_total": sum(i["count"] for i in items)}
