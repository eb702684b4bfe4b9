"""Reads of the document library."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet, Sum

from memory.documents.models import Document


def documents() -> QuerySet[Document]:
    return Document.objects.select_related("uploaded_by").order_by("-created", "-id")


def library_totals() -> dict[str, Any]:
    rows = Document.objects.aggregate(chunks=Sum("chunk_count"), size=Sum("size"))
    return {"documents": Document.objects.count(), "chunks": int(rows["chunks"] or 0), "size": int(rows["size"] or 0),
            "busy": Document.objects.filter(status__in=[Document.Status.QUEUED, Document.Status.INGESTING]).count()}


def document_chunks(document: Document) -> list[Any]:
    """The document's chunks in order (empty until it is indexed, or when its memory is gone)."""
    from memory.services import memory_store

    if not document.memory_id:
        return []
    try:
        return memory_store().get_memory(document.memory_id).chunks
    except ValueError:
        return []
