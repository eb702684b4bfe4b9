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
from memory.curator import curator_settings
from memory.datasets import selectors, services
from memory.datasets.forms import DatasetCreateForm, ExampleFilterForm, ImportForm
from memory.models import GoldenDataset, GoldenExample
from memory.tasks import curate_now

PAGE_SIZE = 25


@login_required
def datasets(request: HtmxHttpRequest) -> HttpResponse:
    """Every dataset (size, persona, last curated), the curator's recent verdicts, and a new-dataset form."""
    return render(request, "memory/dataset_list.html", {
        "datasets": selectors.datasets_overview(),
        "verdicts": selectors.verdicts_recent(),
        "counts": selectors.curator_counts(),
        "curator": curator_settings(),
        "create_form": DatasetCreateForm(),
    })


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
def dataset_export(request: HtmxHttpRequest, dataset_id: int) -> StreamingHttpResponse:
    """The included examples as JSONL in chat format."""
    dataset = get_object_or_404(GoldenDataset, pk=dataset_id)
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
