"""Pages of golden datasets: browse, include/exclude, export, import, and "Curate now"."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from a4ps_site.http import HtmxHttpRequest, safe_next_url
from memory.curator import CRITERIA, curator_settings
from memory.datasets import calibration, selectors, services
from memory.datasets.forms import DatasetCreateForm, ExampleFilterForm, ImportForm
from memory.models import CuratorVerdict, GoldenDataset, GoldenExample
from memory.tasks import curate_now

PAGE_SIZE = 25


@login_required
def datasets(request: HtmxHttpRequest) -> HttpResponse:
    """Every dataset (size, persona, last curated), the curator's recent verdicts, and a new-dataset form."""
    agreement = calibration.agreement()
    try:
        gate_open, gate_why = calibration.training_allowed(agreement)
        gate_config: dict[str, Any] | None = calibration.calibration_settings()
    except ValueError as exc:  # a bad setting is shown, not a crash
        gate_open, gate_why, gate_config = False, str(exc), None
    return render(request, "memory/dataset_list.html", {
        "datasets": selectors.datasets_overview(),
        "verdicts": selectors.verdicts_recent(),
        "counts": selectors.curator_counts(),
        "curator": curator_settings(),
        "create_form": DatasetCreateForm(),
        "agreement": agreement,
        "to_review": calibration.review_queue(request.user).count(),
        "gate": {"open": gate_open, "why": gate_why, "config": gate_config},
    })


@login_required
def dataset_review(request: HtmxHttpRequest) -> HttpResponse:
    """The review queue: one of ALFRED's verdicts at a time, labelled by keyboard (see static/js/review.js).
    POST saves a label (or skips) and answers with the next card."""
    context: dict[str, Any] = {"criteria": [(c, calibration.criterion_label(c)) for c in CRITERIA],
                               "last": None, "error": ""}
    raw_before = request.GET.get("before", "")
    before = int(raw_before) if raw_before.isdigit() else None
    if request.method == "POST":
        raw = request.POST.get("verdict", "")
        verdict = get_object_or_404(CuratorVerdict, pk=int(raw) if raw.isdigit() else 0)
        if request.POST.get("skip"):
            before = verdict.pk
        else:
            try:
                context["last"] = calibration.label_save(
                    verdict=verdict, user=request.user, thumb=request.POST.get("thumb", ""),
                    scores={c: request.POST.get(f"score_{c}", "") for c in CRITERIA})
            except ValueError as exc:
                context["error"] = str(exc)
                before = verdict.pk + 1  # the same verdict again
    if context["last"] is not None:
        context["last_mine"] = calibration.describe_scores(context["last"].scores)
        context["last_theirs"] = calibration.describe_scores(context["last"].verdict.scores)
    context["verdict"] = calibration.review_next(request.user, before=before)
    context["remaining"] = calibration.review_queue(request.user).count()
    if request.htmx:
        return render(request, "memory/_review_card.html", context, status=422 if context["error"] else 200)
    if request.method == "POST" and not context["error"]:
        url = reverse("dataset_review")
        return redirect(f"{url}?before={before}" if before is not None else url)
    return render(request, "memory/dataset_review.html", context, status=422 if context["error"] else 200)


@login_required
@require_POST
def dataset_curate(request: HtmxHttpRequest) -> HttpResponse:
    """"Curate now": queue a curator pass (it runs in the worker; results arrive in the log)."""
    curate_now()
    messages.success(request, "Curator pass queued: ALFRED is judging finished runs.")
    return redirect("datasets")


@login_required
@require_POST
def dataset_create(request: HtmxHttpRequest) -> HttpResponse:
    form = DatasetCreateForm(request.POST)
    if form.is_valid():
        try:
            dataset = services.dataset_create(**form.cleaned_data)
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            return redirect("dataset_detail", dataset_id=dataset.pk)
    else:
        messages.error(request, "The dataset needs a persona and a name.")
    return redirect("datasets")


def _examples_context(request: HtmxHttpRequest, dataset: GoldenDataset | None) -> dict[str, Any]:
    form = ExampleFilterForm(request.GET or None)
    filters = form.filters() if form.is_bound else selectors.ExampleFilters()
    page = Paginator(selectors.examples_page(dataset=dataset, filters=filters), PAGE_SIZE).get_page(
        request.GET.get("page"))
    query = {k: v for k, v in filters.as_query().items() if v not in ("", None)}
    return {"dataset": dataset, "form": form, "page": page, "query": query}


@login_required
def dataset_detail(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    """One dataset's examples: text search, score/date filters, pagination; import, export, fine-tune."""
    dataset = get_object_or_404(GoldenDataset, pk=dataset_id)
    context = _examples_context(request, dataset)
    template = "memory/dataset_detail.html"
    if request.htmx:
        template += "#example-table"
    context.update(import_form=ImportForm(), jobs=dataset.jobs.order_by("-id")[:5])
    return render(request, template, context)


@login_required
def dataset_examples(request: HtmxHttpRequest) -> HttpResponse:
    """Examples across every dataset (with a persona filter)."""
    context = _examples_context(request, None)
    template = "memory/dataset_examples.html"
    if request.htmx:
        template += "#example-table"
    return render(request, template, context)


@login_required
def dataset_example(request: HtmxHttpRequest, example_id: int) -> HttpResponse:
    example = get_object_or_404(GoldenExample.objects.select_related("dataset", "run"), pk=example_id)
    return render(request, "memory/dataset_example.html", {"example": example})


@login_required
@require_POST
def dataset_example_toggle(request: HtmxHttpRequest, example_id: int) -> HttpResponse:
    """Include the example in exports and fine-tunes, or leave it out."""
    example = get_object_or_404(GoldenExample, pk=example_id)
    services.example_set_included(example=example, included=request.POST.get("included") == "1")
    if request.htmx:
        return render(request, "memory/_dataset_example_row.html", {"example": example,
                                                                   "show_dataset": request.POST.get("wide") == "1"})
    return redirect(safe_next_url(request, reverse("dataset_example", args=[example.pk])))


@login_required
def dataset_export(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    """The included examples as JSONL in chat format (unless the calibration gate is shut)."""
    dataset = get_object_or_404(GoldenDataset, pk=dataset_id)
    try:
        allowed, why = calibration.training_allowed()
    except ValueError as exc:
        allowed, why = False, str(exc)
    if not allowed:
        messages.error(request, f"Export refused. {why}")
        return redirect("dataset_detail", dataset_id=dataset.pk)
    response = StreamingHttpResponse(services.dataset_export_lines(dataset=dataset),
                                     content_type="application/jsonl; charset=utf-8")
    name = slugify(f"{dataset.persona}-{dataset.name}") or f"dataset-{dataset.pk}"
    response["Content-Disposition"] = f'attachment; filename="{name}.jsonl"'
    return response


@login_required
@require_POST
def dataset_import(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    """Import a JSONL upload: good lines are stored; every bad line is listed with its number and reason."""
    dataset = get_object_or_404(GoldenDataset, pk=dataset_id)
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose a JSONL file to import.")
        return redirect("dataset_detail", dataset_id=dataset.pk)
    upload = form.cleaned_data["file"]
    report = services.dataset_import_lines(dataset=dataset, lines=upload)
    context = _examples_context(request, dataset)
    context.update(import_form=ImportForm(), jobs=dataset.jobs.order_by("-id")[:5], report=report,
                   report_errors=report.errors[:services.MAX_IMPORT_ERRORS_SHOWN], upload_name=upload.name)
    return render(request, "memory/dataset_detail.html", context, status=200 if not report.errors else 422)
