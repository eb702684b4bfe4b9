"""Writes of the document library: add a file (checked at once, ingested as a job), ingest it into
memory with progress, re-index it and delete it. A document is visible to BABS only once all its chunks
and its summary are written; a failed or cancelled ingest leaves nothing in memory."""
from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from a4ps_site.config import app_settings
from a4ps_site.files import write_atomically
from memory.documents import parsing
from memory.documents.models import Document
from memory.documents.parsing import DocumentError
from personas.events import event_publish
from personas.llm import model_manager

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "max_file_mb": 20,  # larger files are refused
    "max_pages": 500,  # PDF pages
    "max_chunks": 4000,  # per document
    "max_total_chunks": 100_000,  # over the whole library
    "chunk_chars": 900,  # chunks fill to between half this and this many characters
    "overlap_chars": 120,  # neighbouring chunks share up to this many characters
}


class Cancelled(Exception):
    """The document was deleted while it was being ingested."""


def document_settings() -> dict[str, Any]:
    """The [documents] settings over the defaults; a bad value is refused with its key named."""
    merged = {**DEFAULTS, **app_settings().get("documents", {})}
    for key, default in DEFAULTS.items():
        value = merged[key]
        lowest = 0 if key == "overlap_chars" else 1e-9
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lowest:
            what = "0 or more" if key == "overlap_chars" else "a positive number"
            raise DocumentError(f"documents.{key} must be {what}, not {value!r} (config/settings.toml)")
        merged[key] = float(value) if isinstance(default, float) or key == "max_file_mb" else int(value)
    if merged["overlap_chars"] >= merged["chunk_chars"]:
        raise DocumentError("documents.overlap_chars must be smaller than documents.chunk_chars")
    return merged


def files_dir() -> Path:
    path = settings.SHARED_DIR / "documents"
    path.mkdir(parents=True, exist_ok=True)
    return path


def stored_file(document: Document) -> Path:
    suffix = "." + document.name.rsplit(".", 1)[-1].lower() if "." in document.name else ""
    return files_dir() / f"{document.sha256}{suffix}"


def check_size(name: str, size: int) -> None:
    """Refuse a file over documents.max_file_mb (before it is read, when its size is known)."""
    config = document_settings()
    limit = int(float(config["max_file_mb"]) * 1024 * 1024)
    if size > limit:
        raise DocumentError(f"{name}: {size / 1048576:.1f} MB; the limit is {config['max_file_mb']:g} MB "
                            "(documents.max_file_mb)")


def check_file(name: str, data: bytes) -> tuple[parsing.Parsed, list[parsing.Chunk]]:
    """Parse and split a file as ingesting will, so a bad file is refused before anything is stored."""
    config = document_settings()
    name = (name or "").strip() or "unnamed"
    check_size(name, len(data))
    parsed = parsing.parse(name, data, max_pages=int(config["max_pages"]))
    _, chunks = parsing.split(parsed, chunk_chars=int(config["chunk_chars"]),
                              overlap_chars=int(config["overlap_chars"]))
    if len(chunks) > int(config["max_chunks"]):
        raise DocumentError(f"{name}: {len(chunks)} chunks; the limit per document is {config['max_chunks']} "
                            "(documents.max_chunks)")
    return parsed, chunks


def _library_chunks(excluding: int | None = None) -> int:
    rows = Document.objects.exclude(pk=excluding) if excluding else Document.objects.all()
    return int(rows.aggregate(n=Sum("chunk_count"))["n"] or 0)


def document_add(*, name: str, data: bytes, by: Any = None, enqueue: bool = True) -> tuple[Document, bool]:
    """Check a file and keep it, queued for ingesting; (document, False) when the same bytes are already
    in the library (a failed copy is replaced and queued again). DocumentError when the file is refused."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()[:255] or "unnamed"
    parsed, chunks = check_file(name, data)
    total = int(document_settings()["max_total_chunks"])
    if _library_chunks() + len(chunks) > total:
        raise DocumentError(f"{name}: the library would hold more than {total} chunks "
                            "(documents.max_total_chunks); delete documents first")
    sha = hashlib.sha256(data).hexdigest()
    with transaction.atomic():
        existing = Document.objects.select_for_update().filter(sha256=sha).first()
        if existing is not None and existing.status != Document.Status.FAILED:
            return existing, False
        document = existing or Document(sha256=sha)
        document.name, document.title, document.kind = name, parsed.title[:500], parsed.kind
        document.size, document.pages, document.status = len(data), parsed.pages, Document.Status.QUEUED
        document.progress, document.stage, document.error = 0.0, "queued", ""
        document.uploaded_by = by if getattr(by, "pk", None) else None
        document.save()
        write_atomically(stored_file(document), data)
        if enqueue:
            _queue(document, by)
    return document, True


def _queue(document: Document, by: Any) -> None:
    event_publish(kind="document.queued", source=str(by or "system"), payload={
        "document": document.pk,
        "message": f"Document “{document}” queued for indexing ({document.size / 1024:.0f} KB)"})


def document_reindex(*, document: Document, by: Any = None) -> Document:
    """Parse and embed the kept file again (after a settings or embedding-model change)."""
    if document.busy:
        raise ValueError(f"“{document}” is already {document.status}")
    if not stored_file(document).exists():
        raise ValueError(f"the file of “{document}” is gone from {files_dir()}; upload it again")
    claimed = Document.objects.filter(pk=document.pk, status__in=[Document.Status.INDEXED, Document.Status.FAILED]
                                      ).update(status=Document.Status.QUEUED, progress=0.0, stage="queued", error="")
    document.refresh_from_db()
    if not claimed:
        raise ValueError(f"“{document}” is already {document.status}")
    _queue(document, by)
    return document


def documents_resume() -> int:
    """At start-up no worker is indexing anything yet: documents left queued or half-indexed by a stopped
    product are queued again (their half-written chunks were never made visible). Returns how many."""
    from memory.services import memory_store

    stale = list(Document.objects.filter(status__in=[Document.Status.QUEUED, Document.Status.INGESTING]))
    for document in stale:
        if document.pending_memory_id:
            memory_store().delete_memory(document.pending_memory_id, missing_ok=True)
        Document.objects.filter(pk=document.pk).update(status=Document.Status.QUEUED, progress=0.0,
                                                       stage="queued again after a restart", pending_memory_id="")
        _queue(document, None)
    return len(stale)


def _set(document_id: int, **fields: Any) -> None:
    Document.objects.filter(pk=document_id).update(**fields)


def document_ingest(*, document_id: int,
                    on_progress: Callable[[Document], None] | None = None) -> Document | None:
    """Parse, split, embed and write one document; None when it is gone or not queued. The chunks and the
    summary are written under a fresh memory id only after every text is embedded, and the previous
    version (a re-index) is removed only after the new one is complete."""
    from memory.services import memory_store

    claimed = Document.objects.filter(pk=document_id, status__in=[Document.Status.QUEUED]).update(
        status=Document.Status.INGESTING, stage="reading the file", progress=0.0)
    if not claimed:
        return None
    document = Document.objects.get(pk=document_id)
    if on_progress:
        on_progress(document)
    new_id = str(uuid.uuid4())
    store = None
    try:
        parsed, chunks = check_file(document.name, stored_file(document).read_bytes())
        text = parsing.compose(parsed).text
        _set(document_id, stage=f"embedding {len(chunks)} chunks", title=parsed.title[:500], pages=parsed.pages,
             chars=len(text))
        store = memory_store()
        _set(document_id, pending_memory_id=new_id)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            fraction = done / max(total, 1)
            if not Document.objects.filter(pk=document_id).exists():
                raise Cancelled
            if fraction - last[0] >= 0.02 or done == total:
                last[0] = fraction
                _set(document_id, progress=round(0.95 * fraction, 4), stage=f"embedded {done} of {total} texts")
                if on_progress:
                    fresh = Document.objects.filter(pk=document_id).first()
                    if fresh:
                        on_progress(fresh)

        entry = memory_entry(parsed, chunks, name=document.name, document_id=document.pk, sha256=document.sha256)
        store.add_memories([{"id": new_id, **entry}], on_progress=progress)
        old = document.memory_id
        updated = Document.objects.filter(pk=document_id, status=Document.Status.INGESTING).update(
            status=Document.Status.INDEXED, progress=1.0, stage="", memory_id=new_id, chunk_count=len(chunks),
            indexed=timezone.now(), embedding_model=str(getattr(model_manager(), "embedding_model", "")),
            error="", pending_memory_id="")
        if not updated:
            raise Cancelled
        if old and old != new_id:
            store.delete_memory(old, missing_ok=True)
    except Cancelled:
        if store is not None:
            store.delete_memory(new_id, missing_ok=True)
        log.info("document %s was deleted while it was ingested", document_id)
        return None
    except Exception as exc:
        if store is not None:
            try:
                store.delete_memory(new_id, missing_ok=True)
            except Exception:
                log.exception("could not remove the half-written memory %s", new_id)
        message = str(exc) if isinstance(exc, DocumentError) else f"{type(exc).__name__}: {exc}"
        log.warning("document %s failed: %s", document_id, message)
        _set(document_id, status=Document.Status.FAILED, stage="", progress=0.0, error=message[:4000],
             pending_memory_id="")
        event_publish(kind="document.failed", source="worker", payload={
            "document": document_id, "message": f"Document “{document}” could not be indexed: {message}"})
    else:
        event_publish(kind="document.indexed", source="worker", payload={
            "document": document_id, "message": f"Document “{document}” indexed: {len(chunks)} chunks"})
    document = Document.objects.filter(pk=document_id).first()
    if document is not None and on_progress:
        on_progress(document)
    return document


def memory_entry(parsed: parsing.Parsed, chunks: list[parsing.Chunk], *, name: str, document_id: int | None,
                 sha256: str = "") -> dict[str, Any]:
    """A document as add_memories takes it: a summary (title, outline, how it begins) over chunks that each
    start with a line naming the document and section, with page, heading and offsets in their metadata."""
    outline = [b.text for b in parsed.blocks if b.level][:24]
    body = " ".join(b.text for b in parsed.blocks if not b.level)
    title = parsed.title or name
    summary = "\n".join([f"Document: {title}", f"File: {name}",
                         *(["Sections: " + "; ".join(outline)] if outline else []), body[:600]])
    meta = {"kind": "document", "document": document_id, "name": name, "title": title}
    return {"summary": summary, "persona": "BABS", "metadata": {**meta, **({"sha256": sha256} if sha256 else {})},
            "chunks": [{"text": _chunk_text(title, c),
                        "persona": "BABS", "metadata": {**meta, "page": c.page, "page_end": c.page_end,
                                                        "heading": c.heading, "start": c.start, "end": c.end}}
                       for c in chunks]}


def _chunk_text(title: str, chunk: parsing.Chunk) -> str:
    """What is embedded and shown: the chunk under a line naming its document and section."""
    section = parsing.section_of(title, chunk.heading)
    return f"[{title} › {section}]\n{chunk.text}" if section else f"[{title}]\n{chunk.text}"


def document_delete(*, document: Document, by: Any = None) -> int:
    """Remove a document, its chunks from memory and its kept file; returns the chunks removed. An ingest
    in progress notices and removes what it wrote."""
    from memory.services import memory_store

    # The row goes first, read afresh: an ingest that finishes meanwhile either sees it gone (and removes
    # what it wrote) or has already recorded its memory here, which is then removed below.
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(pk=document.pk).first()
        if current is not None:
            document = current
            current.delete()
    removed = 0
    if document.memory_id:
        removed = memory_store().delete_memory(document.memory_id, missing_ok=True)
    path = stored_file(document)
    name = str(document)
    if not Document.objects.filter(sha256=document.sha256).exists():
        path.unlink(missing_ok=True)
    event_publish(kind="document.deleted", source=str(by or "system"), payload={
        "message": f"Document “{name}” deleted with {removed} chunks"})
    return removed
