"""Pages of fine-tune jobs: the Fine-tune form, the jobs list, a job's live page, cancel/promote/roll back."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from a4ps_site.http import HtmxHttpRequest, safe_next_url
from memory.finetunes import selectors, services
from memory.finetunes.engine import held_out_count
from memory.finetunes.forms import FineTuneForm
from memory.finetunes.models import ChatComparison, FineTuneJob, default_hyperparameters
from memory.models import GoldenDataset

PAGE_SIZE = 25


@login_required
def finetune_new(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    """The Fine-tune form (editable hyperparameters); POST queues the job and opens its page."""
    dataset = get_object_or_404(GoldenDataset, pk=dataset_id)
    form = FineTuneForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            job = services.finetune_create(dataset=dataset, hyperparameters=form.hyperparameters, user=request.user)
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("finetune_detail", job_id=job.pk)
    status = 422 if request.method == "POST" else 200
    included = dataset.examples.filter(included=True).count()
    hyper = getattr(form, "hyperparameters", None) or default_hyperparameters()
    return render(request, "memory/finetunes/form.html", {
        "dataset": dataset, "form": form, "base_model": services.base_model_for(dataset.persona),
        "included": included,
        "held_out": held_out_count(included, fraction=float(hyper["eval_fraction"]),
                                   minimum=int(hyper["eval_min_examples"])),
    }, status=status)


@login_required
def finetunes(request: HtmxHttpRequest) -> HttpResponse:
    """Every fine-tune job: status, progress, loss curve, evaluation, promote and rollback."""
    page = Paginator(selectors.jobs_page(), PAGE_SIZE).get_page(request.GET.get("page"))
    votes = selectors.person_votes([job.pk for job in page])  # one query for the whole page
    rows = [{"job": job, "chart": selectors.loss_chart(job.loss_history),
             "gate": selectors.job_gate(job, votes[job.pk])} for job in page]
    return render(request, "memory/finetunes/list.html", {
        "page": page, "rows": rows, "promoted": selectors.promoted_jobs(), "cache": selectors.base_cache(),
    })


@login_required
def finetune_detail(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(FineTuneJob.objects.select_related("dataset", "previous_job"), pk=job_id)
    return render(request, "memory/finetunes/detail.html", {
        "job": job, "chart": selectors.loss_chart(job.loss_history), "gate": selectors.job_gate(job),
    })


def _job_action(request: HtmxHttpRequest, job_id: int, action: Callable[..., Any]) -> HttpResponse:
    job = get_object_or_404(FineTuneJob, pk=job_id)
    try:
        action(job=job)
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect(safe_next_url(request, reverse("finetune_detail", args=[job.pk])))


@login_required
@require_POST
def finetune_cancel(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    return _job_action(request, job_id, services.finetune_cancel)


@login_required
@require_POST
def finetune_promote(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    """Promote; an adapter the evaluation does not show better needs the typed reason of the form."""
    reason = request.POST.get("reason", "")
    return _job_action(request, job_id, lambda job: services.finetune_promote(job=job, user=request.user,
                                                                              reason=reason))


@login_required
@require_POST
def finetune_rollback(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    return _job_action(request, job_id, services.finetune_rollback)


@login_required
@require_POST
def finetune_cache_clear(request: HtmxHttpRequest) -> HttpResponse:
    """Delete the dequantised bases; the next job on each base dequantises it again."""
    try:
        freed = services.base_cache_clear()
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Cleared the dequantised-base cache ({freed / 1e9:.1f} GB freed).")
    return redirect("finetunes")


COMPARE_PAGE_SIZE = 10


@login_required
def finetune_compare(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    """Compare in chat: one prompt to the persona with the base and with the adapter, the answers side by
    side as A and B (which is which is revealed after the vote); POST sends a prompt."""
    job = get_object_or_404(FineTuneJob, pk=job_id)
    error = ""
    prompt = ""
    if request.method == "POST":
        prompt = request.POST.get("prompt", "")
        try:
            services.comparison_create(job=job, prompt=prompt, user=request.user)
        except ValueError as exc:
            error = str(exc)
        else:
            return redirect("finetune_compare", job_id=job.pk)
    page = Paginator(ChatComparison.objects.filter(job=job).select_related("voter").order_by("-id"),
                     COMPARE_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "memory/finetunes/compare.html", {
        "job": job, "page": page, "error": error, "prompt": prompt, "gate": selectors.job_gate(job),
        "max_prompt": services.COMPARE_MAX_PROMPT,
    }, status=422 if error else 200)


@login_required
@require_POST
def comparison_vote(request: HtmxHttpRequest, comparison_id: int) -> HttpResponse:
    comparison = get_object_or_404(ChatComparison, pk=comparison_id)
    try:
        services.comparison_vote(comparison=comparison, vote=request.POST.get("vote", ""), user=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    if request.htmx:
        comparison.refresh_from_db()
        return render(request, "memory/finetunes/_comparison.html", {"c": comparison})
    return redirect("finetune_compare", job_id=comparison.job_id)
