"""Pages of the strategic loop: golden datasets (browse, include/exclude, export, import) and fine-tune jobs."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from memory import datasets as services
from memory import learning_selectors as selectors
from memory.curator import curator_settings
from memory.learning_forms import DatasetCreateForm, ExampleFilterForm, FineTuneForm, ImportForm
from memory.models import FineTuneJob, GoldenDataset, GoldenExample

PAGE_SIZE = 25


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


@login_required
def datasets(request: HttpRequest) -> HttpResponse:
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
def dataset_curate(request: HttpRequest) -> HttpResponse:
    """"Curate now": queue a curator pass (it runs in the worker; results arrive in the log)."""
    from memory.tasks import curate_now

    curate_now()
    messages.success(request, "Curator pass queued: ALFRED is judging finished runs.")
    return redirect("datasets")


@login_required
@require_POST
def dataset_create(request: HttpRequest) -> HttpResponse:
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


def _examples_context(request: HttpRequest, dataset: GoldenDataset | None) -> dict:
    form = ExampleFilterForm(request.GET or None)
    filters = form.filters() if form.is_bound else selectors.ExampleFilters()
    page = Paginator(selectors.examples_page(dataset=dataset, filters=filters), PAGE_SIZE).get_page(
        request.GET.get("page"))
    query = {k: v for k, v in filters.as_query().items() if v not in ("", None)}
    return {"dataset": dataset, "form": form, "page": page, "query": query}


@login_required
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """One dataset's examples: text search, score/date filters, pagination; import, export, fine-tune."""
    dataset = get_object_or_404(GoldenDataset, pk=dataset_id)
    context = _examples_context(request, dataset)
    template = "memory/dataset_detail.html"
    if _is_htmx(request):
        template += "#example-table"
    context.update(import_form=ImportForm(), jobs=dataset.jobs.order_by("-id")[:5])
    return render(request, template, context)


@login_required
def dataset_examples(request: HttpRequest) -> HttpResponse:
    """Examples across every dataset (with a persona filter)."""
    context = _examples_context(request, None)
    template = "memory/dataset_examples.html"
    if _is_htmx(request):
        template += "#example-table"
    return render(request, template, context)


@login_required
def dataset_example(request: HttpRequest, example_id: int) -> HttpResponse:
    example = get_object_or_404(GoldenExample.objects.select_related("dataset", "run"), pk=example_id)
    return render(request, "memory/dataset_example.html", {"example": example})


@login_required
@require_POST
def dataset_example_toggle(request: HttpRequest, example_id: int) -> HttpResponse:
    """Include the example in exports and fine-tunes, or leave it out."""
    example = get_object_or_404(GoldenExample, pk=example_id)
    services.example_set_included(example=example, included=request.POST.get("included") == "1")
    if _is_htmx(request):
        return render(request, "memory/dataset_example_row.html", {"example": example,
                                                                   "show_dataset": request.POST.get("wide") == "1"})
    next_url = request.POST.get("next", "")
    if next_url.startswith("/") and not next_url.startswith("//"):
        return redirect(next_url)
    return redirect("dataset_example", example_id=example.pk)


@login_required
def dataset_export(request: HttpRequest, dataset_id: int) -> StreamingHttpResponse:
    """The included examples as JSONL in chat format."""
    dataset = get_object_or_404(GoldenDataset, pk=dataset_id)
    response = StreamingHttpResponse(services.dataset_export_lines(dataset=dataset),
                                     content_type="application/jsonl; charset=utf-8")
    name = slugify(f"{dataset.persona}-{dataset.name}") or f"dataset-{dataset.pk}"
    response["Content-Disposition"] = f'attachment; filename="{name}.jsonl"'
    return response


@login_required
@require_POST
def dataset_import(request: HttpRequest, dataset_id: int) -> HttpResponse:
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


@login_required
def finetune_new(request: HttpRequest, dataset_id: int) -> HttpResponse:
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
    return render(request, "memory/finetune_form.html", {
        "dataset": dataset, "form": form, "base_model": services.base_model_for(dataset.persona),
        "included": dataset.examples.filter(included=True).count(),
    }, status=status)


@login_required
def finetunes(request: HttpRequest) -> HttpResponse:
    """Every fine-tune job: status, progress, loss curve, evaluation, promote and rollback."""
    page = Paginator(selectors.jobs_page(), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"job": job, "chart": selectors.loss_chart(job.loss_history)} for job in page]
    return render(request, "memory/finetune_list.html", {
        "page": page, "rows": rows, "promoted": selectors.promoted_jobs(),
    })


@login_required
def finetune_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(FineTuneJob.objects.select_related("dataset", "previous_job"), pk=job_id)
    return render(request, "memory/finetune_detail.html", {
        "job": job, "chart": selectors.loss_chart(job.loss_history),
    })


def _job_action(request: HttpRequest, job_id: int, action) -> HttpResponse:
    job = get_object_or_404(FineTuneJob, pk=job_id)
    try:
        action(job=job)
    except ValueError as exc:
        messages.error(request, str(exc))
    next_url = request.POST.get("next", "")
    if next_url.startswith("/") and not next_url.startswith("//"):
        return redirect(next_url)
    return redirect("finetune_detail", job_id=job.pk)


@login_required
@require_POST
def finetune_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    return _job_action(request, job_id, services.finetune_cancel)


@login_required
@require_POST
def finetune_promote(request: HttpRequest, job_id: int) -> HttpResponse:
    return _job_action(request, job_id, services.finetune_promote)


@login_required
@require_POST
def finetune_rollback(request: HttpRequest, job_id: int) -> HttpResponse:
    return _job_action(request, job_id, services.finetune_rollback)
