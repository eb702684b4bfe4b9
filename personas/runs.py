"""Writes of the run lifecycle: submit, cancel, claim, execute, and the steps a run records live.

Queued runs are picked up by the dispatcher (a Huey task) that subscribes to "run.queued" and to
amendment decisions in PersonasConfig.ready(); this module enqueues nothing itself.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from a4ps_site.cluster import claim_lock, worker_gone
from a4ps_site.realtime import DASHBOARD_GROUP, RUNS_GROUP, broadcast, group_for
from personas.events import event_publish
from personas.llm import model_manager
from personas.models import CodexVersion, Run, RunStep
from personas.persona_state import persona_activity_set, persona_count_contribution
from personas.runner import WAITING, RunCancelled, execute
from personas.selectors import goals_recent, run_queue

log = logging.getLogger(__name__)


def run_broadcast(*, run: Run, created: bool = False) -> None:
    """Push the run's header, list row and the queue panel to every page showing them."""
    broadcast(group_for("run", run.pk), "ui.html", html=render_to_string("personas/_run_head_oob.html", {"run": run}))
    row = "personas/_run_row_new_oob.html" if created else "personas/_run_row_oob.html"
    broadcast(RUNS_GROUP, "ui.html", html=render_to_string(row, {"run": run}))
    broadcast(DASHBOARD_GROUP, "ui.html", html=render_to_string("personas/_run_queue_oob.html", {"queue": run_queue()}))
    if run.source == Run.Source.MOTIVATOR and run.goals.exists():
        # A goal's badge follows its run (queued, running, done …), live on the dashboard.
        broadcast(DASHBOARD_GROUP, "ui.html",
                  html=render_to_string("personas/_goals.html", {"goals": goals_recent(), "oob": True}))


MODEL_NAME = r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}"


@dataclass(frozen=True)
class RunOptions:
    """What a person may change for one run; anything left out follows settings.toml."""

    max_turns: int | None = None  # BRICK↔ROBIN exchanges at most (1–10)
    temperature: float | None = None  # sampling temperature of every contribution (0–2)
    tools: bool = True  # False: no tools bound and no tool forged
    memory: bool = True  # False: BABS does not search memory and the run is not stored
    model: str | None = None  # every persona speaks through this Ollama model in this run

    @classmethod
    def from_dict(cls, data: Any) -> RunOptions:
        """Validated options (ValueError naming the option); None or {} is the defaults."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError('Options must be an object like {"max_turns": 1, "tools": false}.')
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"Unknown run option(s): {', '.join(sorted(unknown))}; known: max_turns, temperature, "
                             "tools, memory, model.")
        turns, temperature = data.get("max_turns"), data.get("temperature")
        if turns is not None and (isinstance(turns, bool) or not isinstance(turns, int) or not 1 <= turns <= 10):
            raise ValueError("max_turns must be a whole number from 1 to 10.")
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                        or not 0 <= temperature <= 2):
            raise ValueError("temperature must be a number from 0 to 2.")
        for name in ("tools", "memory"):
            if name in data and not isinstance(data[name], bool):
                raise ValueError(f"{name} must be true or false.")
        model = data.get("model")
        if model is not None and (not isinstance(model, str) or not re.fullmatch(MODEL_NAME, model)):
            raise ValueError("model must be a model name like llama3.1:8b (letters, digits, . _ : / - @ +).")
        return cls(max_turns=turns, temperature=None if temperature is None else float(temperature),
                   tools=data.get("tools", True), memory=data.get("memory", True), model=model or None)

    def as_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults (what the run page lists)."""
        default = RunOptions()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


def follow_up_task(parent: Run, text: str) -> str:
    """A follow-up's task: the earlier task and answer as context, then what the person asks now."""
    answer = parent.final_answer.strip() or "(no answer)"
    return (f"Earlier task (run #{parent.pk}): {parent.task.strip()}\n\nThe team's answer then: {answer}\n\n"
            f"Follow-up: {text.strip()}")


def run_submit(*, task: str, source: str = Run.Source.ARCHITECT, user: Any = None, options: Any = None,
               parent: Run | None = None) -> Run:
    """Queue a task for the graph; the dispatcher runs queued tasks one at a time, oldest first.
    `options` (RunOptions or its dict) change this run only; `parent` links a follow-up or retry."""
    options = options if isinstance(options, RunOptions) else RunOptions.from_dict(options)
    if options.model and getattr(model_manager(), "backend", "") != "ollama":
        raise ValueError(f"A model for one run ({options.model}) needs the Ollama backend; the embedded backend "
                         "speaks through its one local model. Leave the model empty, or start Ollama.")
    task = (task or "").strip()
    if not task:
        raise ValueError("The task is empty: say what the personas should work on.")
    if "\x00" in task:
        raise ValueError("The task contains a NUL character; remove it and send the text again.")
    if len(task) > settings.TASK_MAX_CHARS:
        raise ValueError(f"The task is {len(task):,} characters long; the limit is {settings.TASK_MAX_CHARS:,}.")
    if source not in Run.Source.values:
        raise ValueError(f"Unknown run source {source!r}.")
    with transaction.atomic():
        run = Run.objects.create(task=task, source=source, created_by=user if getattr(user, "pk", None) else None,
                                 options=options.as_dict(), parent=parent)
        event_publish(kind="run.queued", source=source,
                      payload={"run": run.pk, "message": f"Run #{run.pk} queued: {task[:120]}"})
        transaction.on_commit(lambda: run_broadcast(run=run, created=True))
    return run


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


def run_requeue_waiting(*, amendment_id: int) -> int:
    """Runs that waited for a decision on this amendment go back to the queue (they resume, not restart)."""
    requeued = 0
    for run in Run.objects.filter(waiting_on_id=amendment_id, status=Run.Status.WAITING):
        requeued += Run.objects.filter(pk=run.pk, status=Run.Status.WAITING).update(status=Run.Status.QUEUED)
        run.refresh_from_db()
        run_broadcast(run=run)
    return requeued


def run_claim_next(*, worker: str, lease_s: int) -> Run | None:
    """Take the next run: one whose worker died (lease expired) first, else the oldest queued.

    A node (one machine, see a4ps_site.cluster) executes one run at a time: a run holds its model in
    memory. Several nodes on one database each take their own run; the claim lock makes sure no two
    workers take the same one."""
    now = timezone.now()
    node = worker.rpartition(":")[0]
    with transaction.atomic():
        claim_lock()
        busy = Run.objects.filter(
            status__in=[Run.Status.RUNNING, Run.Status.CANCELLING], lease_until__gt=now, worker__startswith=f"{node}:"
        ).exists()
        if busy:
            return None
        # Eval runs belong to their eval worker (they carry the item's own memory): never claimed here.
        claimable = Run.objects.exclude(source=Run.Source.EVAL)
        run = (
            claimable.filter(status__in=[Run.Status.RUNNING, Run.Status.CANCELLING], lease_until__lte=now)
            .order_by("id").first()
            or claimable.filter(status=Run.Status.QUEUED).order_by("id").first()
        )
        if run is None:
            return None
        resumed = run.status != Run.Status.QUEUED or run.waiting_on_id is not None
        previous = run.worker if run.status != Run.Status.QUEUED else ""
        run.status = Run.Status.CANCELLING if run.status == Run.Status.CANCELLING else Run.Status.RUNNING
        run.worker = worker
        run.lease_until = now + timedelta(seconds=lease_s)
        run.started = run.started or now
        run.attempts += 1
        run.save(update_fields=["status", "worker", "lease_until", "started", "attempts"])
        taken_over = f" (taken over from {previous}, whose lease ran out)" if resumed and previous else ""
        message = f"Run #{run.pk} {'resumed' if resumed else 'started'} on {worker}{taken_over}"
        event_publish(kind="run.resumed" if resumed else "run.started", source="worker",
                      payload={"run": run.pk, "worker": worker, "message": message})
        transaction.on_commit(lambda: run_broadcast(run=run))
    return run


def run_release_dead_workers() -> int:
    """At consumer start: expire the leases of runs held by processes of this node that are gone."""
    active = Run.objects.filter(status__in=[Run.Status.RUNNING, Run.Status.CANCELLING]).exclude(worker="")
    return sum(Run.objects.filter(pk=run.pk, worker=run.worker).update(lease_until=timezone.now())
               for run in active if worker_gone(run.worker))


def run_execute(*, run: Run, overrides: dict[str, Any] | None = None) -> Run:
    """Execute a claimed run to its end and record the outcome; errors are kept on the run.
    `overrides` replace parts of the graph's outside world (see runner.execute)."""
    codex_version = CodexVersion.objects.order_by("-number").values_list("number", flat=True).first()
    Run.objects.filter(pk=run.pk).update(codex_version=codex_version)
    outcome: dict[str, Any]
    try:
        final = execute(run, record_step=run_step_record, overrides=overrides)
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
            persona_count_contribution(name=persona, kind=kind, tokens=fields["completion_tokens"],
                                       dissonance=dissonance)
        html = render_to_string("personas/_run_step_oob.html", {"step": step})
        transaction.on_commit(lambda: broadcast(group_for("run", run_id), "ui.html", html=html))
    return step
