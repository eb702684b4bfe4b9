"""Web research: search, fetch the top pages, keep their main text in memory (kind "web", with URL and
fetch time) and report; every fetch is an event and a WebFetch row."""
from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone

from a4ps_site.config import app_settings
from memory.documents import parsing
from memory.documents.services import document_settings
from memory.research.fetch import FetchError, Page, WebSettings, fetch, search
from memory.research.models import WebFetch
from personas.events import event_publish

log = logging.getLogger(__name__)

REUSE_FOR = timedelta(hours=24)  # a page fetched this recently is not fetched again


def web_settings() -> WebSettings:
    """The [web] settings (off by default); ValueError names a bad key."""
    return WebSettings.from_dict(app_settings().get("web", {}))


def web_status() -> dict[str, Any]:
    """What the Models page shows: on or off, which provider, or why the settings are refused."""
    try:
        settings = web_settings()
    except ValueError as exc:
        return {"enabled": False, "error": str(exc), "provider": "", "recent": []}
    return {"enabled": settings.enabled, "error": "", "provider": settings.provider_label,
            "allow_private": settings.allow_private, "max_results": settings.max_results,
            "recent": list(WebFetch.objects.all()[:5])}


def senses() -> dict[str, Any]:
    """The Models page's card: the document library's size and whether web research is on."""
    from django.urls import reverse

    from memory.documents.selectors import library_totals

    totals = library_totals()
    web = web_status()
    web["recent"] = [{"url": f.final_url or f.url, "status": f.status, "reason": f.reason, "fetched_at": f.fetched_at}
                     for f in web["recent"]]
    return {"documents": totals["documents"], "chunks": totals["chunks"], "documents_url": reverse("documents"),
            "web": web}


def _page_text(page: Page) -> parsing.Parsed:
    name = "page.html" if page.content_type != "text/plain" else "page.txt"
    try:
        return parsing.parse(name, page.body)
    except parsing.DocumentError as exc:
        raise FetchError(f"{page.final_url}: {str(exc).removeprefix(name + ': ')}") from None


def _store_page(page: Page, parsed: parsing.Parsed, *, query: str) -> tuple[str, int]:
    from memory.services import memory_store

    config = document_settings()
    _, chunks = parsing.split(parsed, chunk_chars=config["chunk_chars"], overlap_chars=config["overlap_chars"])
    chunks = chunks[: config["max_chunks"]]
    title = parsed.title if parsed.title != "page" else page.final_url
    memory_id = str(uuid.uuid4())
    meta = {"kind": "web", "url": page.final_url, "title": title, "fetched_at": page.fetched_at}
    body = " ".join(b.text for b in parsed.blocks if not b.level)
    store = memory_store()
    try:
        store.add_memories([{
            "id": memory_id, "persona": "BABS", "metadata": {**meta, "query": query},
            "summary": f"Web page: {title}\nURL: {page.final_url}\nFetched: {page.fetched_at}\n{body[:600]}",
            "chunks": [{"text": f"[{title}]\n{c.text}", "persona": "BABS",
                        "metadata": {**meta, "heading": c.heading, "start": c.start, "end": c.end}} for c in chunks],
        }])
    except Exception:
        store.delete_memory(memory_id, missing_ok=True)
        raise
    return memory_id, len(chunks)


def web_research(*, query: str, run_id: int | None = None) -> dict[str, Any]:
    """Search the web for `query` and keep the top pages in memory. {"enabled": False} when web research
    is off; otherwise {"query", "fetched": [...], "refused": [...], "error"}. Never raises for the web's
    sake: a provider that is down is reported in "error"."""
    try:
        settings = web_settings()
    except ValueError as exc:
        return {"enabled": False, "error": f"web research settings refused: {exc}", "fetched": [], "refused": []}
    if not settings.enabled:
        return {"enabled": False, "error": "", "fetched": [], "refused": []}
    query = " ".join(query.split())[:400]
    report: dict[str, Any] = {"enabled": True, "query": query, "provider": settings.provider_label, "error": "",
                              "fetched": [], "refused": []}
    try:
        results = search(query, settings)
    except FetchError as exc:
        report["error"] = str(exc)
        event_publish(kind="web.search_failed", source="BABS", payload={
            "run": run_id, "message": f"Web search for “{query[:80]}” failed: {exc}"})
        return report
    seen: set[str] = set()
    for result in results:
        if len(report["fetched"]) >= settings.max_results:
            break
        if result.url in seen:
            continue
        seen.add(result.url)
        report_row = _fetch_one(result.url, result.title, settings, query=query, run_id=run_id)
        report["fetched" if report_row["status"] != WebFetch.Status.REFUSED else "refused"].append(report_row)
    return report


def _fetch_one(url: str, title: str, settings: WebSettings, *, query: str, run_id: int | None) -> dict[str, Any]:
    from memory.services import memory_store

    recent = (WebFetch.objects.filter(url=url, status=WebFetch.Status.STORED,
                                      fetched_at__gte=timezone.now() - REUSE_FOR).exclude(memory_id="").first())
    if recent is not None:
        try:
            memory_store().get_memory(recent.memory_id)
        except ValueError:
            recent = None
    if recent is not None:
        row = WebFetch.objects.create(url=url, final_url=recent.final_url, title=recent.title, query=query[:500],
                                      run_id=run_id, status=WebFetch.Status.REUSED, sha256=recent.sha256,
                                      memory_id=recent.memory_id, chunk_count=recent.chunk_count)
        message = f"BABS reused {url} (fetched {recent.fetched_at:%Y-%m-%d %H:%M})"
    else:
        try:
            page = fetch(url, settings)
            parsed = _page_text(page)
            sha = hashlib.sha256(page.body).hexdigest()
            memory_id, n = _store_page(page, parsed, query=query)
        except Exception as exc:  # one bad page never fails the run: it is refused, with the reason
            if not isinstance(exc, FetchError):
                log.warning("fetching %s failed", url, exc_info=True)
                exc = FetchError(f"{url}: {type(exc).__name__}: {exc}")
            row = WebFetch.objects.create(url=url, title=title[:500], query=query[:500], run_id=run_id,
                                          status=WebFetch.Status.REFUSED, reason=str(exc)[:2000])
            event_publish(kind="web.refused", source="BABS", payload={
                "run": run_id, "url": url, "message": f"BABS did not fetch {url}: {exc}"})
            return {"url": url, "status": row.status, "reason": row.reason}
        row = WebFetch.objects.create(url=url, final_url=page.final_url, title=(parsed.title or title)[:500],
                                      query=query[:500], run_id=run_id, status=WebFetch.Status.STORED, sha256=sha,
                                      memory_id=memory_id, chunk_count=n)
        message = f"BABS fetched {page.final_url}: {n} chunk{'s' if n != 1 else ''} into memory"
    event_publish(kind="web.fetched", source="BABS", payload={"run": run_id, "url": row.final_url or url,
                                                              "message": message})
    return {"url": row.final_url or url, "title": row.title, "status": row.status, "chunks": row.chunk_count,
            "memory": row.memory_id}
