"""Huey task of the document library (thin: take the id, call the service)."""
from __future__ import annotations

from huey.contrib.djhuey import db_task

from memory.documents.services import document_ingest


@db_task()
def document_ingest_run(document_id: int) -> str | None:
    """Parse, embed and store a queued document."""
    document = document_ingest(document_id=document_id)
    return document.status if document else None
