"""Memory services: the process's MemoryStore, what runs write into it and what BABS reads back."""
from __future__ import annotations

import logging
import re
import threading
from typing import Any

from django.conf import settings
from django.urls import reverse

from a4ps_site.config import app_settings
from memory.documents.parsing import section_of
from memory.store import MemoryStore
from personas.events import event_publish
from personas.inference.embeddings import cosine_similarity
from personas.llm import model_manager
from personas.models import RunStep

log = logging.getLogger(__name__)

_lock = threading.Lock()
_stores: dict[str, Any] = {}


def memory_settings() -> dict[str, Any]:
    return {"uri": "", "exact_threshold": 50_000, "search_k": 5, **app_settings().get("memory", {})}


def _store_uri(embedding_model: str) -> str:
    """One store per embedding model: vectors of different models cannot share an index."""
    configured = memory_settings()["uri"]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", embedding_model).strip("-") or "default"
    if configured:
        return configured.rstrip("/") + "/" + slug
    return str(settings.SHARED_DIR / "memory" / slug)


def memory_store() -> Any:
    """The MemoryStore for the embedding model in use (opened once per process)."""
    manager = model_manager()
    uri = _store_uri(getattr(manager, "embedding_model", "embeddings"))
    with _lock:
        store = _stores.get(uri)
        if store is None:
            dim = getattr(manager, "embedding_dim", None) or len(manager.embed(["dimension probe"])[0])
            store = MemoryStore(uri, embed=lambda texts: manager.embed(list(texts)), dim=int(dim),
                                exact_threshold=int(memory_settings()["exact_threshold"]))
            _stores[uri] = store
        return store


def reset_stores() -> None:
    """Forget opened stores (tests switch var dirs; restore re-opens tables)."""
    with _lock:
        for store in _stores.values():
            try:
                store.close()
            except Exception:  # closing is best effort
                pass
        _stores.clear()


def memory_search(*, query: str, k: int) -> list[dict[str, Any]]:
    """Hierarchical search, as plain dicts for BABS's prompt and the run transcript."""
    return search_store(memory_store(), query=query, k=k)


def search_store(store: Any, *, query: str, k: int) -> list[dict[str, Any]]:
    """memory_search over a given store (the person's memory, or a library built for an eval)."""
    if store.count(level=1) == 0:
        return []
    hits = store.search_hierarchical(query, k=k)
    if not hits:
        return []
    # Relevance is the cosine similarity of query and hit (the fused rank score says only "better than
    # the others"), so BABS can leave out what merely came first among unrelated memories. Vector matches
    # carry their cosine distance from the search already; only full-text-only matches are embedded here.
    relevance = {h.id: 1.0 - h.distance for h in hits if h.distance is not None}
    missing = [h for h in hits if h.distance is None]
    if missing:
        vectors = model_manager().embed([query, *[h.text for h in missing]])
        relevance.update({h.id: cosine_similarity(vectors[0], vectors[i + 1]) for i, h in enumerate(missing)})
    return [
        {"id": h.id, "text": h.text, "score": round(h.score, 4), "run_id": h.run_id, "persona": h.persona,
         "summary": h.parent_text, "summary_id": h.parent_id, "relevance": round(relevance[h.id], 4),
         "source": hit_source(h)}
        for h in hits
    ]


def hit_source(hit: Any) -> dict[str, Any]:
    """Where a memory came from, for citations: a document chunk, a web page, an earlier run."""
    meta = hit.metadata or {}
    if meta.get("kind") == "document":
        title = meta.get("title") or meta.get("name") or f"document {meta.get('document')}"
        where = section_of(title, meta.get("heading") or "")
        if meta.get("page"):
            where = f"page {meta['page']}" + (f"–{meta['page_end']}" if meta.get("page_end") else "")
        # A library outside memory (the evals') has no page to link to.
        url = (reverse("document_detail", args=[meta["document"]]) + f"?chunk={hit.id}#chunk-{hit.id}"
               if meta.get("document") else "")
        return {"kind": "document", "document": meta.get("document"), "chunk": hit.id, "page": meta.get("page"),
                "heading": meta.get("heading", ""), "label": f"{title}, {where}" if where else title, "url": url}
    if meta.get("kind") == "web" and meta.get("url"):
        return {"kind": "web", "url": meta["url"], "label": meta.get("title") or meta["url"],
                "fetched_at": meta.get("fetched_at", "")}
    if hit.run_id:
        return {"kind": "run", "run": hit.run_id, "label": f"run #{hit.run_id}",
                "url": reverse("run_detail", args=[hit.run_id])}
    return {"kind": "memory", "label": f"memory {str(hit.parent_id or hit.id)[:8]}",
            "url": reverse("memory_detail", args=[hit.parent_id or hit.id])}


def memory_of_run(run_id: int) -> str | None:
    """The memory (summary id) a run stored, if it stored one and it still exists."""
    step = RunStep.objects.filter(run_id=run_id, kind="memory", data__has_key="memory").order_by("-seq").first()
    memory_id = step.data.get("memory") if step else None
    if not memory_id:
        return None
    try:
        memory_store().get_memory(memory_id)
    except ValueError:
        return None
    return str(memory_id)


def memory_forget_run(*, run_id: int, reason: str, by: Any = None) -> int:
    """Remove what a run stored in memory (a person's "don't remember this run", or the curator's low
    score); returns the chunks removed (0 when nothing was stored). Recorded on the run's transcript."""
    memory_id = memory_of_run(run_id)
    if not memory_id:
        return 0
    removed = memory_delete(memory_id=memory_id, by=by)
    RunStep.objects.filter(run_id=run_id, kind="memory", data__memory=memory_id).update(
        content=f"Removed from memory: {reason}")
    return removed


def memory_write_run(*, run_id: int, state: dict[str, Any]) -> dict[str, Any] | None:
    """Store a finished run: ALFRED's answer as the summary, the dialogue turns as chunks.

    The caller enqueues an index check afterwards (the tables may have grown past a threshold)."""
    answer = (state.get("final_answer") or "").strip()
    if not answer:
        return None
    steps = {s.content.strip(): s.pk for s in RunStep.objects.filter(run_id=run_id, kind__in=["thesis", "antithesis"])}
    chunks = [
        {"text": turn["content"], "persona": turn["persona"], "step_id": steps.get(turn["content"].strip())}
        for turn in state.get("dialogue", []) if turn.get("content", "").strip()
    ]
    if state.get("babs_report") and state.get("memories"):
        chunks.append({"text": state["babs_report"], "persona": "BABS", "step_id": None})
    chunks.append({"text": answer, "persona": "ALFRED", "step_id": None})
    summary = f"Task: {state['task'].strip()}\nALFRED's answer: {answer}"
    record = memory_store().add_memory(summary=summary, chunks=chunks, run_id=run_id, persona="ALFRED",
                                       metadata={"source": state.get("source", "architect")})
    return {"memory": record.id, "chunks": len(chunks),
            "note": f"Stored in memory: a summary and {len(chunks)} chunks (memory {record.id[:8]})."}


def memory_delete(*, memory_id: str, by: Any = None) -> int:
    """Delete a summary and its chunks (returns how many chunks); recorded as an event."""
    store = memory_store()
    record = store.get_memory(memory_id)
    if record.metadata.get("kind") == "document" and record.metadata.get("document"):
        raise ValueError("this memory is a document of the library: delete it on the Documents page, "
                         "so its file and entry go too")
    removed = store.delete_memory(memory_id)
    event_publish(kind="memory.deleted", source=str(by or "system"), payload={
        "memory": memory_id, "run": record.run_id,
        "message": f"Memory {memory_id[:8]} (run #{record.run_id}) deleted with {removed} chunks"})
    return removed
