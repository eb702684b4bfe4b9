"""Pages of the document library: the list with upload (picker or drag-and-drop, progress per file), a
document's chunk view, re-index and delete."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from a4ps_site.http import HtmxHttpRequest
from memory.documents import parsing, selectors, services
from memory.documents.models import Document
from memory.documents.parsing import DocumentError
from personas.api import api_auth, api_error

PAGE_SIZE = 25
CHUNKS_PER_PAGE = 30


def _rows_context(request: HtmxHttpRequest) -> dict:
    page = Paginator(selectors.documents(), PAGE_SIZE).get_page(request.GET.get("page"))
    return {"page": page, "totals": selectors.library_totals()}


@login_required
def documents(request: HtmxHttpRequest) -> HttpResponse:
    """The library; a plain form POST (no script) adds every chosen file and reports each one."""
    if request.method == "POST":
        files = request.FILES.getlist("files")
        if not files:
            messages.error(request, "Choose one or more files to upload.")
        for upload in files:
            try:
                services.check_size(upload.name, upload.size)
                document, created = services.document_add(name=upload.name, data=upload.read(), by=request.user)
            except DocumentError as exc:
                messages.error(request, str(exc))
            else:
                if created:
                    messages.success(request, f"{upload.name}: added; indexing it now.")
                else:
                    messages.info(request, f"{upload.name}: already in the library as “{document}”.")
        return redirect("documents")
    try:
        limit = services.document_settings()["max_file_mb"]
    except DocumentError as exc:  # shown on the page; every upload is refused with the same reason
        messages.error(request, f"Uploads are refused until the settings are fixed: {exc}")
        limit = services.DEFAULTS["max_file_mb"]
    return render(request, "memory/documents/list.html", {
        **_rows_context(request), "accept": parsing.ACCEPT, "max_file_mb": limit,
    })


@login_required
def document_rows(request: HtmxHttpRequest) -> HttpResponse:
    """The list's rows (polled while a document is being indexed)."""
    return render(request, "memory/documents/_rows.html", _rows_context(request))


@api_auth
def document_upload(request: HtmxHttpRequest) -> JsonResponse:
    """One file per request (the page sends each file on its own, to show its progress): the document
    as JSON, 201 when added, 200 when the same file was already there, 400 when refused."""
    if request.method != "POST":
        return api_error(405, "POST a file as multipart form data, field 'file'.")
    upload = request.FILES.get("file")
    if upload is None:
        return api_error(400, "No file: send it as multipart form data in the field 'file'.")
    try:
        services.check_size(upload.name, upload.size)
        document, created = services.document_add(name=upload.name, data=upload.read(), by=request.user)
    except DocumentError as exc:
        return api_error(400, str(exc), name=upload.name)
    return JsonResponse({
        "id": document.pk, "name": document.name, "title": document.title, "status": document.status,
        "created": created, "url": reverse("document_detail", args=[document.pk]),
        "message": ("added; indexing it now" if created else f"already in the library as “{document}”"),
    }, status=201 if created else 200)


@login_required
def document_detail(request: HtmxHttpRequest, document_id: int) -> HttpResponse:
    """The chunk view: each chunk with its page or heading and offsets; `?chunk=<id>` opens the page of
    the chunk a citation points at."""
    document = get_object_or_404(Document, pk=document_id)
    chunks = selectors.document_chunks(document)
    number = request.GET.get("page")
    wanted = request.GET.get("chunk", "")
    if wanted and "page" not in request.GET:
        index = next((i for i, c in enumerate(chunks) if c.id == wanted), None)
        if index is not None:
            number = str(index // CHUNKS_PER_PAGE + 1)
    page = Paginator(chunks, CHUNKS_PER_PAGE).get_page(number)
    return render(request, "memory/documents/detail.html", {
        "document": document, "page": page, "wanted": wanted, "chunk_total": len(chunks),
    })


@login_required
@require_POST
def document_reindex(request: HtmxHttpRequest, document_id: int) -> HttpResponse:
    document = get_object_or_404(Document, pk=document_id)
    try:
        services.document_reindex(document=document, by=request.user)
    except ValueError as exc:
        messages.error(request, f"Not re-indexed: {exc}")
    else:
        messages.success(request, f"Re-indexing “{document}”.")
    return redirect("document_detail", document_id=document.pk)


@login_required
@require_POST
def document_delete(request: HtmxHttpRequest, document_id: int) -> HttpResponse:
    document = get_object_or_404(Document, pk=document_id)
    name = str(document)
    removed = services.document_delete(document=document, by=request.user)
    messages.success(request, f"Deleted “{name}” and its {removed} chunks from memory.")
    return redirect("documents")
