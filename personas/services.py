"""Writes for personas and the event log."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from a4ps_site.config import PersonaSpec, codex
from a4ps_site.realtime import DASHBOARD_GROUP, EVENTS_GROUP, MODELS_GROUP, RUNS_GROUP, broadcast, group_for
from personas.models import CodexVersion, Event, ModelCall, Persona, Run, RunStep

log = logging.getLogger(__name__)

EVENT_KIND_MAX = 64


def render_event_oob(message: dict) -> str:
    """The log entry partial wrapped for an out-of-band prepend into #event-log."""
    event = dict(message)
    event["created"] = datetime.fromisoformat(event["created"])
    return render_to_string("personas/_event_oob.html", {"event": event})


def event_publish(*, kind: str, source: str = "system", payload: dict[str, Any] | None = None) -> Event:
    """Persist an event and broadcast it to every open dashboard once the transaction commits."""
    kind = kind.strip()
    if not kind or len(kind) > EVENT_KIND_MAX:
        raise ValueError(f"event kind must be 1..{EVENT_KIND_MAX} characters, got {kind!r}")
    with transaction.atomic():
        event = Event.objects.create(kind=kind, source=source[:64] or "system", payload=payload or {})
        # Rendered once here rather than once per connected socket.
        html = render_event_oob(event.as_message())
        transaction.on_commit(lambda: broadcast(EVENTS_GROUP, "ui.html", html=html))
        from personas.motivator import TRIGGERS

        if kind in TRIGGERS:
            transaction.on_commit(lambda: _enqueue_motivator(event.pk))
    return event


@transaction.atomic
def persona_sync_from_codex(*, specs: dict[str, PersonaSpec] | None = None) -> list[Persona]:
    """Create or update the Persona rows from the codex; live state is kept."""
    specs = specs if specs is not None else codex()
    personas = []
    for spec in specs.values():
        persona, _ = Persona.objects.update_or_create(
            name=spec.name,
            defaults={
                "order": spec.order,
                "role": spec.role,
                "title": spec.title,
                "system_prompt": spec.system_prompt,
                "principles": list(spec.principles),
            },
        )
        personas.append(persona)
    if not CodexVersion.objects.exists():
        from a4ps_site.config import codex_path

        CodexVersion.objects.create(number=1, text=codex_path().read_text(), reason="seeded from codex.toml")
    return personas


# --- runs ------------------------------------------------------------------------------------------

def _run_html(run: Run) -> dict[str, str]:
    """The run's partials as they appear on the run page, the runs list and the dashboard queue."""
    from personas.selectors import run_queue

    return {
        "head": render_to_string("personas/_run_head_oob.html", {"run": run}),
        "row": render_to_string("personas/_run_row_oob.html", {"run": run}),
        "queue": render_to_string("personas/_run_queue_oob.html", {"queue": run_queue()}),
    }


def run_broadcast(*, run: Run, created: bool = False) -> None:
    """Push the run's header, list row and the queue panel to every page showing them."""
    html = _run_html(run)
    broadcast(group_for("run", run.pk), "ui.html", html=html["head"])
    row = html["row"]
    if created:
        row = render_to_string("personas/_run_row_new_oob.html", {"run": run})
    broadcast(RUNS_GROUP, "ui.html", html=row)
    broadcast(DASHBOARD_GROUP, "ui.html", html=html["queue"])


def run_submit(*, task: str, source: str = Run.Source.ARCHITECT, user: Any = None) -> Run:
    """Queue a task for the graph; the dispatcher runs queued tasks one at a time, oldest first."""
    task = (task or "").strip()
    if not task:
        raise ValueError("The task is empty: say what the personas should work on.")
    if len(task) > settings.TASK_MAX_CHARS:
        raise ValueError(f"The task is {len(task):,} characters long; the limit is {settings.TASK_MAX_CHARS:,}.")
    if source not in Run.Source.values:
        raise ValueError(f"Unknown run source {source!r}.")
    with transaction.atomic():
        run = Run.objects.create(task=task, source=source, created_by=user if getattr(user, "pk", None) else None)
        event_publish(kind="run.queued", source=source, payload={"run": run.pk, "message": f"Run #{run.pk} queued: {task[:120]}"})
        transaction.on_commit(lambda: run_broadcast(run=run, created=True))
        transaction.on_commit(_enqueue_dispatch)
    return run


def _enqueue_motivator(event_id: int) -> None:
    from personas.tasks import motivate

    motivate(event_id)


def _enqueue_dispatch() -> None:
    from personas.tasks import dispatch_runs

    dispatch_runs()


def run_cancel(*, run: Run) -> Run:
    """Cancel a queued run at once, or ask a running one to stop at its next token or step."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status in (Run.Status.QUEUED, Run.Status.WAITING):
            run.status = Run.Status.CANCELLED
            run.finished = timezone.now()
        elif run.status == Run.Status.RUNNING:
            run.status = Run.Status.CANCELLING
        else:
            raise ValueError(f"Run #{run.pk} is {run.status}; only queued, waiting or running runs can be cancelled.")
        run.save(update_fields=["status", "finished"])
        event_publish(kind="run.cancelled" if run.status == Run.Status.CANCELLED else "run.cancelling",
                      source="architect", payload={"run": run.pk, "message": f"Run #{run.pk} {run.status}"})
        transaction.on_commit(lambda: run_broadcast(run=run))
    return run


def run_claim_next(*, worker: str, lease_s: int) -> Run | None:
    """Take the next run: one whose worker died (lease expired) first, else the oldest queued.

    Only one run executes at a time (one model in memory); the lease is the lock."""
    now = timezone.now()
    with transaction.atomic():
        busy = Run.objects.filter(
            status__in=[Run.Status.RUNNING, Run.Status.CANCELLING], lease_until__gt=now
        ).exists()
        if busy:
            return None
        run = (
            Run.objects.filter(status__in=[Run.Status.RUNNING, Run.Status.CANCELLING], lease_until__lte=now)
            .order_by("id").first()
            or Run.objects.filter(status=Run.Status.QUEUED).order_by("id").first()
        )
        if run is None:
            return None
        resumed = run.status != Run.Status.QUEUED or run.waiting_on_id is not None
        run.status = Run.Status.CANCELLING if run.status == Run.Status.CANCELLING else Run.Status.RUNNING
        run.worker = worker
        run.lease_until = now + timedelta(seconds=lease_s)
        run.started = run.started or now
        run.attempts += 1
        run.save(update_fields=["status", "worker", "lease_until", "started", "attempts"])
        event_publish(kind="run.resumed" if resumed else "run.started", source="worker",
                      payload={"run": run.pk, "message": f"Run #{run.pk} {'resumed' if resumed else 'started'} on {worker}"})
        transaction.on_commit(lambda: run_broadcast(run=run))
    return run


def run_release_dead_workers(*, host: str, alive: Any) -> int:
    """At consumer start: expire the leases of runs held by processes on this host that are gone."""
    expired = 0
    for run in Run.objects.filter(status__in=[Run.Status.RUNNING, Run.Status.CANCELLING], worker__startswith=f"{host}:"):
        pid = int(run.worker.rsplit(":", 1)[1] or 0)
        if not alive(pid):
            expired += Run.objects.filter(pk=run.pk, worker=run.worker).update(lease_until=timezone.now())
    return expired


def run_execute(*, run: Run) -> Run:
    """Execute a claimed run to its end and record the outcome; errors are kept on the run."""
    from personas.runner import WAITING, RunCancelled, execute

    codex_version = CodexVersion.objects.order_by("-number").values_list("number", flat=True).first()
    Run.objects.filter(pk=run.pk).update(codex_version=codex_version)
    try:
        final = execute(run)
    except RunCancelled:
        outcome = {"status": Run.Status.CANCELLED, "error": ""}
        final = {}
    except Exception as exc:  # recorded on the run and shown on its page; nothing is lost
        log.exception("run %s failed", run.pk)
        outcome = {"status": Run.Status.FAILED, "error": f"{type(exc).__name__}: {exc}"}
        final = {}
    else:
        outcome = {"status": Run.Status.DONE, "error": ""}
        if WAITING in final:
            outcome = {"status": Run.Status.WAITING, "error": "", "waiting_on_id": final[WAITING]}
    scores = final.get("dissonance") or list(run.steps.exclude(dissonance=None).values_list("dissonance", flat=True))
    with transaction.atomic():
        waiting = outcome["status"] == Run.Status.WAITING
        Run.objects.filter(pk=run.pk).update(
            final_answer=final.get("final_answer", ""), max_dissonance=max(scores) if scores else None,
            finished=None if waiting else timezone.now(), lease_until=None, **outcome,
        )
        run.refresh_from_db()
        persona_activity_set(name=None, activity="idle")
        message = {
            Run.Status.DONE: f"Run #{run.pk} finished",
            Run.Status.CANCELLED: f"Run #{run.pk} cancelled",
            Run.Status.WAITING: f"Run #{run.pk} waits for a decision on codex amendment #{run.waiting_on_id}",
        }.get(run.status, f"Run #{run.pk} failed: {run.error}")
        event_publish(kind=f"run.{run.status}", source="worker", payload={"run": run.pk, "message": message})
        transaction.on_commit(lambda: run_broadcast(run=run))
    return run


def run_step_record(*, run_id: int, key: str, node: str, persona: str, kind: str, content: str,
                    data: dict[str, Any] | None = None, result: Any = None, dissonance: float | None = None,
                    duration_ms: float = 0.0) -> RunStep:
    """Persist one node contribution (idempotent per key) and broadcast it to the run's page."""
    fields = {
        "node": node, "persona": persona, "kind": kind, "content": content, "data": data or {},
        "dissonance": dissonance, "duration_ms": duration_ms,
        "prompt_tokens": getattr(result, "prompt_tokens", 0) or 0,
        "completion_tokens": getattr(result, "completion_tokens", 0) or 0,
        "model_ms": getattr(result, "total_ms", 0.0) or 0.0,
    }
    with transaction.atomic():
        step = RunStep.objects.filter(run_id=run_id, key=key).first()
        step_existed = step is not None
        if step:
            RunStep.objects.filter(pk=step.pk).update(**fields)
            step.refresh_from_db()
        else:
            Run.objects.filter(pk=run_id).update(last_seq=F("last_seq") + 1)
            seq = Run.objects.values_list("last_seq", flat=True).get(pk=run_id)
            step = RunStep.objects.create(run_id=run_id, key=key, seq=seq, **fields)
        if not step_existed and persona:
            _persona_count(name=persona, kind=kind, tokens=fields["completion_tokens"], dissonance=dissonance)
        html = render_to_string("personas/_run_step_oob.html", {"step": step})
        transaction.on_commit(lambda: broadcast(group_for("run", run_id), "ui.html", html=html))
    return step


def _persona_count(*, name: str, kind: str, tokens: int, dissonance: float | None) -> None:
    """The persona's live counters (part of the living image): contributions, tokens, last dissonance."""
    persona = Persona.objects.select_for_update().filter(name=name).first()
    if persona is None:
        return
    state = dict(persona.state)
    counts = dict(state.get("contributions", {}))
    counts[kind] = counts.get(kind, 0) + 1
    state["contributions"] = counts
    state["tokens_generated"] = int(state.get("tokens_generated", 0)) + int(tokens or 0)
    if dissonance is not None:
        state["last_dissonance"] = dissonance
    Persona.objects.filter(pk=persona.pk).update(state=state)


def run_stream_tokens(*, run_id: int, persona: str, node: str, text: str, start: bool) -> None:
    """Show the speaking persona's tokens as they arrive (not persisted: the step holds the text)."""
    template = "personas/_typing_start_oob.html" if start else "personas/_typing_more_oob.html"
    html = render_to_string(template, {"persona": persona, "node": node, "text": text})
    broadcast(group_for("run", run_id), "ui.html", html=html)


def persona_activity_set(*, name: str | None, activity: str, run_id: int | None = None) -> None:
    """Mark a persona busy (and the others idle), or all idle with name=None; cards update live."""
    from personas.selectors import persona_cards

    with transaction.atomic():
        for persona in Persona.objects.select_for_update():
            state = dict(persona.state)
            new = activity if persona.name == name else "idle"
            if state.get("activity") != new or (name and persona.name == name and state.get("run") != run_id):
                state["activity"] = new
                state["run"] = run_id if persona.name == name else None
                Persona.objects.filter(pk=persona.pk).update(state=state)
        cards = persona_cards()
        html = "".join(render_to_string("personas/_persona_card_oob.html", {"card": c}) for c in cards)
        transaction.on_commit(lambda: broadcast(DASHBOARD_GROUP, "ui.html", html=html))


def persona_state_set(*, name: str, state_json: str, by: Any = None) -> Persona:
    """Cognitive surgery: replace a persona's live state with an edited JSON object."""
    import json

    try:
        state = json.loads(state_json)
    except ValueError as exc:
        raise ValueError(f"The state is not valid JSON: {exc}") from None
    if not isinstance(state, dict):
        raise ValueError("The state must be a JSON object, e.g. {\"mood\": \"curious\"}.")
    with transaction.atomic():
        persona = Persona.objects.select_for_update().get(name=name)
        persona.state = state
        persona.save(update_fields=["state", "updated"])
        event_publish(kind="persona.state_edited", source=str(by or "architect"), payload={
            "persona": name, "message": f"{name}'s live state edited in the inspector"})
    return persona


# --- models ----------------------------------------------------------------------------------------

def model_call_record(*, record: Any) -> ModelCall:
    """Keep one model call for the swap timeline and show it on the Models page."""
    call = ModelCall.objects.create(
        model=record.model[:200], persona=record.persona or "", backend=record.backend, load_ms=record.load_ms,
        total_ms=record.total_ms, prompt_tokens=record.prompt_tokens, completion_tokens=record.completion_tokens,
        tokens_per_s=record.tokens_per_s, ok=record.ok, error=record.error, started=record.started_at,
    )
    html = render_to_string("personas/_model_call_oob.html", {"call": call})
    transaction.on_commit(lambda: broadcast(MODELS_GROUP, "ui.html", html=html))
    return call


def models_settings_save(*, backend: str, mapping: dict[str, str]) -> None:
    """Write the backend choice and persona → model mapping into settings.toml (validated, atomic)."""
    import tomlkit

    from a4ps_site.config import parse_settings, settings_path
    from personas.codex import write_atomically
    from personas.inference import ModelsConfig

    path = settings_path()
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    models = doc.setdefault("models", tomlkit.table())
    models["backend"] = backend
    personas = models.setdefault("personas", tomlkit.table())
    for name, model in mapping.items():
        personas[name] = model.strip()
    data = doc.unwrap()
    parse_settings(data)
    ModelsConfig.from_dict(data.get("models"))  # raises ValueError naming the bad key
    write_atomically(path, tomlkit.dumps(doc))
    event_publish(kind="models.configured", source="architect", payload={
        "backend": backend, "message": f"Model settings saved: backend {backend}, " +
        ", ".join(f"{k} → {v}" for k, v in mapping.items())})


def model_pull_progress(*, model: str, update: dict[str, Any]) -> None:
    """Show a pull's progress bar on the Models page."""
    html = render_to_string("personas/_pull_oob.html", {"model": model, "u": update})
    broadcast(MODELS_GROUP, "ui.html", html=html)


def model_status_broadcast(*, status: dict[str, Any]) -> None:
    """Tell open pages which model is loaded now (and remember it for pages opened later)."""
    import json
    import os

    path = settings.VAR_DIR / "model_status.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path)
    html = render_to_string("personas/_model_status_oob.html", {"status": status})
    broadcast(DASHBOARD_GROUP, "ui.html", html=html)
    broadcast(MODELS_GROUP, "ui.html", html=html)


# --- seams the cognitive graph calls (filled by the memory and forge apps) ---------------------------

def memory_search_for_graph(query: str, k: int) -> list[dict[str, Any]]:
    """What BABS retrieves: a hierarchical search of the memory store."""
    from memory.services import memory_search

    return memory_search(query=query, k=k)


def memory_write_for_graph(*, run_id: int, state: dict[str, Any]) -> dict[str, Any] | None:
    """Store a finished run in memory (summary + dialogue chunks, with provenance)."""
    from memory.services import memory_write_run

    return memory_write_run(run_id=run_id, state=state)


def forge_request_for_graph(*, run_id: int, spec: str) -> dict[str, Any]:
    """BRICK asked for a tool: the Tool Forge builds and tests it now (this already runs in a worker)."""
    from forge.services import forge_for_graph

    return forge_for_graph(run_id=run_id, spec=spec)


def tool_schemas_for_graph() -> list[dict[str, Any]]:
    """The live tool registry as function schemas for BRICK (re-read whenever a tool changed)."""
    from forge.registry import registry

    return registry().schemas()


def tool_call_for_graph(*, run_id: int, name: str, arguments: dict[str, Any]) -> Any:
    """A model called a tool during run `run_id`: run it in the sandbox, record the call, return its result."""
    from forge.services import tool_call_for_graph as forge_tool_call

    return forge_tool_call(name=name, arguments=arguments, run_id=run_id)
