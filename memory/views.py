"""Pages of the memory app: the memory browser and the living image."""
from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from a4ps_site.http import HtmxHttpRequest
from a4ps_site.realtime import broadcast, group_for
from memory import image as living_image
from memory import services
from memory.imagefile import CorruptImage
from memory.store import CHUNK_LEVEL, SUMMARY_LEVEL
from personas.models import Persona, Run
from personas.persona_state import persona_state_set

PAGE = 20


@login_required
def memory_home(request: HtmxHttpRequest) -> HttpResponse:
    """Search (hierarchical, with scores and run links), browse summaries, index statistics."""
    store = services.memory_store()
    query = request.GET.get("q", "").strip()[:500]
    try:
        page = max(1, int(request.GET.get("page", 1)))
    except ValueError:
        page = 1
    hits = store.search_hierarchical(query, k=20) if query and store.count(level=1) else []
    total = store.count(level=1)
    summaries = store.list_summaries(offset=(page - 1) * PAGE, limit=PAGE)
    stats = store.stats()
    rows = {"summaries": stats["rows"][SUMMARY_LEVEL], "chunks": stats["rows"][CHUNK_LEVEL]}
    tables = [
        {"name": name, "rows": rows[name], "version": stats["versions"][name],
         "index": stats["index"][name], "full_text": stats["full_text"][name]}
        for name in ("summaries", "chunks")
    ]
    return render(request, "memory/memory.html", {
        "query": query, "hits": hits, "summaries": summaries, "stats": stats, "tables": tables,
        "page": page, "has_next": page * PAGE < total, "total": total,
    })


@login_required
def memory_detail(request: HtmxHttpRequest, memory_id: str) -> HttpResponse:
    try:
        record = services.memory_store().get_memory(memory_id)
    except (KeyError, ValueError):
        raise Http404("No such memory.") from None
    return render(request, "memory/memory_detail.html", {"record": record})


@login_required
@require_POST
def memory_delete(request: HtmxHttpRequest, memory_id: str) -> HttpResponse:
    try:
        removed = services.memory_delete(memory_id=memory_id, by=request.user)
    except (KeyError, ValueError) as exc:
        messages.error(request, f"Nothing deleted: {exc}")
    else:
        messages.success(request, f"Deleted the memory and its {removed} chunks.")
    return redirect("memory")


@login_required
@require_POST
def run_forget(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    """A person's "don't remember this run": its answer and dialogue leave memory."""
    run = get_object_or_404(Run, pk=run_id)
    removed = services.memory_forget_run(run_id=run.pk, reason=f"{request.user} asked not to remember this run",
                                         by=request.user)
    if removed:
        messages.success(request, f"Run #{run.pk} removed from memory ({removed} chunks): later runs will not "
                                  "retrieve it.")
    else:
        messages.info(request, f"Run #{run.pk} had nothing in memory.")
    broadcast(group_for("run", run.pk), "ui.html",
              html=render_to_string("personas/_run_head_oob.html", {"run": run}))
    return redirect("run_detail", run.pk)


def _image_page(request: HtmxHttpRequest, *, typed: dict[str, str] | None = None, status: int = 200) -> HttpResponse:
    """The Image page; `typed` keeps a rejected inspector edit in its box."""
    edits = {p.name: json.dumps(p.state, indent=2, sort_keys=True) for p in Persona.objects.order_by("order")}
    edits.update(typed or {})
    return render(request, "memory/image.html", {"images": living_image.image_list(), "edits": edits}, status=status)


@login_required
def image(request: HtmxHttpRequest) -> HttpResponse:
    """Snapshots (time, size, contents), save now, restore, and the persona-state inspector."""
    return _image_page(request)


@login_required
@require_POST
def image_save(request: HtmxHttpRequest) -> HttpResponse:
    saved = living_image.image_save(reason=f"saved by {request.user}")
    messages.success(request, f"Saved {saved.name} ({saved.size / 1024:.1f} KiB).")
    return redirect("image")


@login_required
@require_POST
def image_restore(request: HtmxHttpRequest) -> HttpResponse:
    name = request.POST.get("name", "")
    try:
        living_image.image_restore(name=name, by=request.user)
    except (ValueError, CorruptImage) as exc:
        messages.error(request, f"Nothing was restored: {exc}")
    else:
        messages.success(request, f"Restored {name}: persona states, codex and memory are back to that moment.")
    return redirect("image")


@login_required
@require_POST
def persona_state_edit(request: HtmxHttpRequest, name: str) -> HttpResponse:
    try:
        persona_state_set(name=name, state_json=request.POST.get("state", ""), by=request.user)
    except Persona.DoesNotExist:
        raise Http404("No such persona.") from None
    except ValueError as exc:
        messages.error(request, f"{name}'s state was not changed: {exc}")
        return _image_page(request, typed={name: request.POST.get("state", "")}, status=400)
    messages.success(request, f"{name}'s live state updated.")
    return redirect("image")
