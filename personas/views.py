"""Dashboard pages of the personas app (thin views: read selectors, render)."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from a4ps_site.config import config_errors
from personas import selectors


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "personas/dashboard.html",
        {
            "cards": selectors.persona_cards(),
            "events": selectors.events_recent(limit=50),
            "config_errors": config_errors(),
        },
    )


@login_required
def event_log(request: HttpRequest) -> HttpResponse:
    kind = request.GET.get("kind", "").strip()[:64]
    page = Paginator(selectors.events_page(kind=kind), 50).get_page(request.GET.get("page"))
    template = "personas/events.html"
    if getattr(request, "htmx", False):
        template += "#event-table"
    return render(request, template, {"page": page, "kind": kind})


def pending(title: str, what: str):
    """A page whose feature has not been built yet: it says so, and shows no invented data."""

    @login_required
    def view(request: HttpRequest) -> HttpResponse:
        return render(request, "pending.html", {"title": title, "what": what})

    view.__name__ = f"pending_{title.lower().replace(' ', '_').replace('-', '_')}"
    return view


runs = pending("Runs", "The list of reasoning runs, their transcripts and live progress.")
models_page = pending("Models", "The model backend in use, the persona → model mapping and the swap timeline.")
codex_page = pending("Codex", "The personas' principles, their version history and pending amendments.")
