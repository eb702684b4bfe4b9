"""Dashboard pages of the personas app (thin views: read selectors, render)."""
from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from a4ps_site.config import codex, config_errors
from a4ps_site.http import HtmxHttpRequest, safe_next_url
from personas import motivator, selectors
from personas import runs as run_services
from personas.forms import MODEL_NAME, FollowUpForm, ModelsForm, TaskForm
from personas.graph.diagram import graph_mermaid, graph_svg
from personas.llm import model_manager, models_config, models_settings_save
from personas.models import CodexAmendment, CodexVersion, Goal, Run
from personas.ports import ports
from personas.tasks import pull_model


def _dashboard(request: HtmxHttpRequest, form: TaskForm, *, status: int = 200) -> HttpResponse:
    return render(request, "personas/dashboard.html", {
        "cards": selectors.persona_cards(),
        "form": form,
        "queue": selectors.run_queue(),
        "events": selectors.events_recent(limit=50),
        "config_errors": config_errors(),
        "model_status": selectors.model_status(),
        "goals": selectors.goals_recent(),
    }, status=status)


@login_required
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    """The dashboard; ?edit=<run> fills the task form from that run ("edit and resubmit")."""
    edit = Run.objects.filter(pk=request.GET.get("edit", "")).first() if request.GET.get("edit", "").isdigit() else None
    return _dashboard(request, TaskForm(initial=TaskForm.initial_for(edit)) if edit else TaskForm())


@login_required
def event_log(request: HtmxHttpRequest) -> HttpResponse:
    kind = request.GET.get("kind", "").strip()[:64]
    page = Paginator(selectors.events_page(kind=kind), 50).get_page(request.GET.get("page"))
    template = "personas/events.html"
    if request.htmx:
        template += "#event-table"
    return render(request, template, {"page": page, "kind": kind})


@login_required
@require_POST
def run_submit(request: HtmxHttpRequest) -> HttpResponse:
    """The dashboard's task box: queue the task, or show why not with the text kept."""
    form = TaskForm(request.POST)
    if form.is_valid():
        parent = Run.objects.filter(pk=form.cleaned_data["parent"]).first() if form.cleaned_data["parent"] else None
        try:
            run = run_services.run_submit(task=form.cleaned_data["task"], user=request.user, options=form.options(),
                                          parent=parent)
        except ValueError as exc:
            form.add_error("task", str(exc))
        else:
            if request.htmx:
                return render(request, "personas/_task_form.html", {"form": TaskForm(), "submitted": run})
            return redirect("run_detail", run_id=run.pk)
    if request.htmx:
        return render(request, "personas/_task_form.html", {"form": form}, status=422)
    return _dashboard(request, form, status=400)


@login_required
@require_POST
def run_follow_up(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    """"Continue with…" (a follow-up that carries the earlier task and answer) or "Retry" (the same task
    and options); either way a new run linked to this one."""
    parent = get_object_or_404(Run, pk=run_id)
    retry = request.POST.get("action") == "retry"
    form = FollowUpForm(request.POST)
    if not retry and not form.is_valid():
        return _run_page(request, parent, follow_up=form, status=400)
    task = parent.task if retry else run_services.follow_up_task(parent, form.cleaned_data["text"])
    try:
        run = run_services.run_submit(task=task, user=request.user, options=parent.options, parent=parent)
    except ValueError as exc:
        form.add_error("text" if not retry else None, str(exc))
        return _run_page(request, parent, follow_up=form, status=400)
    messages.success(request, f"{'Retry' if retry else 'Follow-up'} of run #{parent.pk} queued as run #{run.pk}.")
    return redirect("run_detail", run_id=run.pk)


@login_required
def runs(request: HtmxHttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    source = request.GET.get("source", "")
    status = status if status in Run.Status.values else ""
    source = source if source in Run.Source.values else ""
    page = Paginator(selectors.runs_page(status=status, source=source), 25).get_page(request.GET.get("page"))
    template = "personas/runs.html"
    if request.htmx:
        template += "#run-table"
    return render(request, template, {
        "page": page, "status": status, "source": source,
        "statuses": Run.Status.values, "sources": Run.Source.values,
    })


@login_required
def run_detail(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    return _run_page(request, get_object_or_404(Run, pk=run_id))


def _run_page(request: HtmxHttpRequest, run: Run, *, follow_up: FollowUpForm | None = None,
              status: int = 200) -> HttpResponse:
    steps = selectors.run_steps(run=run)
    return render(request, "personas/run_detail.html", {
        "run": run, "steps": steps, "diagram": graph_mermaid(),
        "diagram_svg": mark_safe(graph_svg()),  # built here from node names, which are escaped
        "visited": [s.node for s in steps if "." not in s.key],
        "budget": selectors.run_budget(run=run),
        "follow_up": follow_up or FollowUpForm(),
        "follow_ups": list(run.follow_ups.order_by("id").values_list("pk", flat=True)),
    }, status=status)


@login_required
@require_POST
def run_cancel(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(Run, pk=run_id)
    try:
        run_services.run_cancel(run=run)
    except ValueError as exc:
        messages.error(request, str(exc))
    if request.htmx and not request.htmx.boosted:  # the runs list swaps its row in place
        run.refresh_from_db()
        return render(request, "personas/_run_row.html", {"run": run})
    return redirect(safe_next_url(request, reverse("run_detail", args=[run.pk])))


@login_required
def models_page(request: HtmxHttpRequest) -> HttpResponse:
    """Backend in use and why, the editable mapping, the loaded model, the swap timeline, pulls."""
    config = models_config()
    names = list(config.personas)
    initial = {"backend": config.backend, **{f"model_{n}": m for n, m in config.personas.items()},
               **{f"embedded_{n}": m for n, m in config.embedded.persona_models.items()}}
    form = ModelsForm(request.POST or None, initial=initial, personas=names, embedded=config.embedded.persona_models)
    status_code = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                models_settings_save(backend=form.cleaned_data["backend"], mapping=form.mapping(),
                                     embedded=form.embedded_mapping())
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Saved to settings.toml: used from the next model call.")
                return redirect("models")
        status_code = 400
    return render(request, "personas/models.html", {
        "status": model_manager().status(), "form": form, "calls": selectors.model_calls_recent(limit=30),
        "model_status": selectors.model_status(), "cards": selectors.persona_cards(),
        "senses": ports().senses(),
    }, status=status_code)


@login_required
@require_POST
def model_pull(request: HtmxHttpRequest) -> HttpResponse:
    model = request.POST.get("model", "").strip()
    if not re.match(MODEL_NAME, model):
        messages.error(request, "That is not a model name.")
    else:
        pull_model(model)
        messages.info(request, f"Pulling {model}: progress shows below.")
    return redirect("models")
@login_required
def codex_page(request: HtmxHttpRequest) -> HttpResponse:
    amendments = CodexAmendment.objects.order_by("-id")
    return render(request, "personas/codex.html", {
        "specs": sorted(codex().values(), key=lambda s: s.order),
        "current": CodexVersion.objects.order_by("-number").first(),
        "versions": CodexVersion.objects.order_by("-number")[:50],
        "pending": amendments.filter(status=CodexAmendment.Status.PROPOSED),
        "decided": amendments.exclude(status=CodexAmendment.Status.PROPOSED)[:20],
        "codex_error": config_errors().get("codex.toml"),
    })


@login_required
@require_POST
def goal_decide(request: HtmxHttpRequest, goal_id: int) -> HttpResponse:
    goal = get_object_or_404(Goal, pk=goal_id)
    decision = request.POST.get("decision")
    try:
        if decision == "approve":
            goal = motivator.goal_approve(goal=goal)
            messages.success(request, f"Goal queued as run #{goal.run_id}.")
        elif decision == "dismiss":
            motivator.goal_dismiss(goal=goal)
            messages.info(request, "Goal dismissed.")
        else:
            messages.error(request, "Choose to run or to dismiss the goal.")
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect("dashboard")
