"""The Evals page: start a run, watch it live, the scoreboard over time, one item in detail, two runs compared."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from a4ps_site.http import HtmxHttpRequest
from forge.evals import selectors, services
from forge.evals.models import EvalRun
from forge.evals.suites import load_tasks, load_tools

MODES = sorted({m for modes in services.SUITES.values() for m in modes})


class EvalForm(forms.Form):
    suite = forms.ChoiceField(choices=[(s, s) for s in services.SUITES])
    mode = forms.ChoiceField(choices=[(m, m) for m in MODES])
    limit = forms.IntegerField(min_value=0, max_value=10_000, initial=5, label="Items")

    def clean(self) -> dict:
        data = super().clean() or {}
        suite, mode = data.get("suite"), data.get("mode")
        if suite and mode and mode not in services.SUITES[suite]:
            raise forms.ValidationError(f"The {suite} suite has no {mode} mode: choose "
                                        f"{', '.join(services.SUITES[suite])}.")
        return data


@login_required
def evals(request: HtmxHttpRequest) -> HttpResponse:
    """GET: the page; POST: start an eval (the worker runs it) and open its live page."""
    form = EvalForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                run = services.eval_run_create(user=request.user, **form.cleaned_data)
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("eval_run", run_id=run.pk)
        status = 400
    page = Paginator(selectors.runs_page(), 25).get_page(request.GET.get("page"))
    return render(request, "forge/evals/evals.html", {
        "form": form, "page": page, "board": selectors.scoreboard(),
        "counts": {"tools": len(load_tools()), "tasks": sum(not i.setup_web for i in load_tasks())},
    }, status=status)


@login_required
def eval_run(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(EvalRun, pk=run_id)
    previous = selectors.previous_run(run=run)
    return render(request, "forge/evals/run_detail.html", {
        "run": run, "results": selectors.run_results(run=run), "table": selectors.category_table(run=run),
        "previous": previous,
    })


@login_required
@require_POST
def eval_run_cancel(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(EvalRun, pk=run_id)
    try:
        run = services.eval_run_cancel(run=run)
    except ValueError as exc:
        messages.error(request, str(exc))
    if request.htmx:
        return render(request, "forge/evals/_run_head.html", {"run": run, "oob": True})
    return redirect("eval_run", run_id=run.pk)


@login_required
def eval_item(request: HtmxHttpRequest, run_id: int, item_id: str) -> HttpResponse:
    run = get_object_or_404(EvalRun, pk=run_id)
    result = selectors.run_result(run=run, item_id=item_id)
    if result is None:
        raise Http404(f"Eval #{run.pk} has no result for {item_id}.")
    items = {i.id: i for i in (load_tools() if run.suite == "tools" else load_tasks())}
    return render(request, "forge/evals/item.html", {"run": run, "result": result, "item": items.get(item_id)})


@login_required
def eval_compare(request: HtmxHttpRequest) -> HttpResponse:
    """Two eval runs side by side: ?run=A&run=B (the older is "before")."""
    try:
        ids = sorted({int(x) for x in request.GET.getlist("run")})
    except ValueError:
        ids = []
    if len(ids) != 2:
        messages.error(request, "Tick exactly two eval runs to compare.")
        return redirect("evals")
    a, b = (get_object_or_404(EvalRun, pk=pk) for pk in ids)
    return render(request, "forge/evals/compare.html", selectors.compare(a=a, b=b))
