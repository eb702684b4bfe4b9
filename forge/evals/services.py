"""Writes of eval runs: create (validated, queued for the worker), execute item by item (resumable,
cancellable, live), cancel. The engine (forge/evals/engine.py) does the judging."""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from a4ps_site.cluster import worker_id
from a4ps_site.realtime import broadcast, group_for
from forge import sandbox
from forge.config import ForgeSettings, forge_settings
from forge.evals import engine
from forge.evals.models import EvalResult, EvalRun
from forge.evals.selectors import category_table, previous_run
from forge.evals.suites import TaskItem, ToolItem, check_answer, load_tasks, load_tools
from personas import runs
from personas.events import event_publish
from personas.inference.embeddings import cosine_similarity
from personas.llm import model_manager, models_config
from personas.models import Run
from personas.ports import ports
from personas.runner import lease_seconds

log = logging.getLogger(__name__)

EVALS_GROUP = "evals"  # the Evals page: rows and the scoreboard
SUITES = {"tools": engine.TOOL_MODES, "tasks": engine.TASK_MODES}


def suite_items(suite: str) -> list[ToolItem] | list[TaskItem]:
    if suite == "tools":
        return load_tools()
    if suite == "tasks":
        return load_tasks()
    raise ValueError(f"Unknown suite {suite!r}: choose {' or '.join(SUITES)}.")


def _check(suite: str, mode: str, limit: int) -> None:
    if suite not in SUITES:
        raise ValueError(f"Unknown suite {suite!r}: choose {' or '.join(SUITES)}.")
    if mode not in SUITES[suite]:
        raise ValueError(f"The {suite} suite has no mode {mode!r}: choose {', '.join(SUITES[suite])}.")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError("The limit must be a whole number of items, 0 for all of them.")


def git_commit() -> str:
    """The checkout's commit (with "+changes" when the work tree differs), or "unknown"."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=settings.BASE_DIR, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=settings.BASE_DIR,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def settings_snapshot(config: ForgeSettings) -> dict[str, Any]:
    """The settings an eval's figures depend on: the forge's, the models' and the sampler seed."""
    forge = asdict(config)
    forge["limits"] = asdict(config.limits)
    models = models_config()
    return {"forge": forge, "models": {"backend": models.backend, "personas": dict(models.personas),
                                       "embedded": asdict(models.embedded)},
            "seed": engine.SEED}


def digest(snapshot: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True, default=str).encode()).hexdigest()[:16]


def eval_run_create(*, suite: str, mode: str, limit: int = 0, user: Any = None, enqueue: bool = True) -> EvalRun:
    """Record an eval run of the first `limit` items (0 = all); the worker that subscribes to
    "evals.queued" (ForgeConfig.ready()) executes it after commit, unless `enqueue` is off."""
    _check(suite, mode, limit)
    # Web tasks need a search engine that serves their pages; the test suite provides one, a person's
    # machine (with web research off, or on the real web) does not: the runner leaves them out.
    items = [i for i in suite_items(suite) if not getattr(i, "setup_web", ())]
    chosen = [i.id for i in (items[:limit] if limit else items)]
    with transaction.atomic():
        run = EvalRun.objects.create(suite=suite, mode=mode, limit=limit, item_ids=chosen, total=len(chosen),
                                     created_by=user if getattr(user, "pk", None) else None)
        event_publish(kind="evals.queued", source="architect" if user else "system", payload={
            "eval_run": run.pk, "inline": not enqueue,
            "message": f"Eval #{run.pk} queued: {suite} suite, {mode} mode, {len(chosen)} item(s)"})
        transaction.on_commit(lambda: eval_run_broadcast(run_id=run.pk))
    return run


def eval_run_cancel(*, run: EvalRun) -> EvalRun:
    """Cancel a queued run at once, or ask a running one to stop after the current item."""
    with transaction.atomic():
        run = EvalRun.objects.select_for_update().get(pk=run.pk)
        if run.status == EvalRun.Status.QUEUED:
            run.status, run.finished = EvalRun.Status.CANCELLED, timezone.now()
        elif run.status == EvalRun.Status.RUNNING:
            run.status = EvalRun.Status.CANCELLING
        else:
            raise ValueError(f"Eval #{run.pk} is {run.status}; only queued or running evals can be cancelled.")
        run.save(update_fields=["status", "finished"])
        transaction.on_commit(lambda: eval_run_broadcast(run_id=run.pk))
    return run


def _claim(run_id: int, model: Any) -> EvalRun | None:
    """QUEUED → RUNNING for exactly one worker, recording what the run runs on (the sandbox actually used)."""
    with transaction.atomic():
        run = EvalRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != EvalRun.Status.QUEUED:
            return None
        config = forge_settings()
        snapshot = settings_snapshot(config)
        persona = "BRICK" if run.suite == "tools" else "ALFRED"
        try:
            model_name = model.resolve(persona)[1] if hasattr(model, "resolve") else str(getattr(model, "name", ""))
            backend = str(getattr(model, "backend", ""))
        except Exception as exc:  # the model is unreachable: recorded, and the items then fail with the reason
            model_name, backend = f"(unresolved: {exc})", ""
        run.status, run.started = EvalRun.Status.RUNNING, timezone.now()
        try:
            sandbox_name = sandbox.select_backend(config.backend).name
        except sandbox.SandboxError as exc:  # recorded; each item then fails with the same reason
            sandbox_name = f"{config.backend} (unavailable: {exc})"[:32]
        run.model, run.backend, run.sandbox = f"{persona}: {model_name}"[:300], backend, sandbox_name
        run.settings, run.settings_digest, run.commit = snapshot, digest(snapshot), git_commit()
        run.save()
        event_publish(kind="evals.started", source="worker", payload={
            "eval_run": run.pk, "message": f"Eval #{run.pk} started: {run.suite}/{run.mode} on {run.model}"})
    return run


def _forge_budgets(run: EvalRun) -> dict[str, int]:
    """Per item, the tokens the newest finished forge eval of the same items spent (resample's budget)."""
    rows = EvalResult.objects.filter(run__suite=run.suite, run__mode="forge", run__status=EvalRun.Status.DONE,
                                     item_id__in=run.item_ids).order_by("run_id")
    return {r.item_id: r.tokens for r in rows}


def _store(run: EvalRun, result: engine.ItemResult) -> None:
    with transaction.atomic():
        _, created = EvalResult.objects.update_or_create(run=run, item_id=result.item_id, defaults={
            "category": result.category, "style": result.style, "passed": result.passed, "attempts": result.attempts,
            "tokens": result.tokens, "seconds": result.seconds, "output": result.output, "why": result.why[:4000],
            "detail": result.detail})
        if created:
            EvalRun.objects.filter(pk=run.pk).update(done=F("done") + 1, passed=F("passed") + int(result.passed),
                                                     tokens=F("tokens") + result.tokens,
                                                     seconds=F("seconds") + result.seconds)
        transaction.on_commit(lambda: eval_run_broadcast(run_id=run.pk, item_id=result.item_id))


def _item_memory(item: TaskItem, model: Any) -> Callable[[str, int], list[dict[str, Any]]]:
    """An eval run's memory: only the facts the item says an earlier run stored, ranked by similarity; for
    a task that ships documents, a library of every document the suite ships (built once, outside the
    person's memory), so retrieval must find the right one among them all."""
    if item.setup_documents:
        library = ports().document_library(suite_documents())
        if library is not None:
            return library

    def search(query: str, k: int) -> list[dict[str, Any]]:
        facts = list(item.setup_memory)
        if not facts:
            return []
        vectors = model.embed([query, *facts])
        scored = sorted(((cosine_similarity(vectors[0], vectors[i + 1]), fact) for i, fact in enumerate(facts)),
                        reverse=True)[:k]
        return [{"id": f"eval-{item.id}-{i}", "text": fact, "relevance": round(score, 4), "run_id": None,
                 "persona": "ALFRED"} for i, (score, fact) in enumerate(scored)]

    return search


def suite_documents() -> tuple[tuple[str, str], ...]:
    """Every document the tasks suite ships, once each."""
    seen: dict[str, str] = {}
    for item in load_tasks():
        for name, text in item.setup_documents:
            seen.setdefault(name, text)
    return tuple(sorted(seen.items()))


def run_task_graph(item: TaskItem, *, model: Any, eval_run: EvalRun | None = None,
                   retrieval: bool = True) -> engine.ItemResult:
    """A task as a full run through the graph (source "eval"): its own memory holding only the item's
    setup facts, nothing written to the real memory; the final answer checked by the item's rule.
    The run stays on the Runs page, so every step can be inspected. Without `retrieval` (closedbook mode)
    BABS finds nothing: the same graph, with nothing to look things up in."""
    # The item's memory first (a document task's library is built once, before any run is recorded).
    search = _item_memory(item, model) if retrieval else (lambda query, k: [])
    started = time.perf_counter()
    result = engine.ItemResult(item.id, item.category, "", False, attempts=1)
    run = Run.objects.create(task=item.task, source=Run.Source.EVAL, status=Run.Status.RUNNING,
                             worker=worker_id(), started=timezone.now(),
                             lease_until=timezone.now() + timedelta(seconds=lease_seconds()))
    no_memory = {"note": "An eval run: nothing is stored in memory."}
    # An eval measures; it never changes the system: no codex amendments, no motivating events, no
    # waiting for a person, nothing written to memory.
    run = runs.run_execute(run=run, overrides={
        "model": model, "memory_search": search,
        "memory_write": lambda state: no_memory,
        "web_research": lambda query: {"enabled": False},
        "on_dissonance": lambda score, detail: None, "amendment_evidence": lambda: [],
        "propose_amendment": lambda **draft: None, "wait_for_decision": False,
    })
    result.output = run.final_answer
    result.tokens = sum(run.steps.values_list("completion_tokens", flat=True))
    answer = run.answer_step()
    result.detail = {"run": run.pk, "status": run.status, "fallback": bool(answer and answer.data.get("fallback")),
                     "budget_out": (answer.data.get("budget_out", "") if answer else ""),
                     "steps": run.steps.count(), **({"eval_run": eval_run.pk} if eval_run else {})}
    if run.status != Run.Status.DONE:
        result.why = f"the run ended {run.status}" + (f": {run.error}" if run.error else "")
    else:
        result.passed, reason = check_answer(item, run.final_answer)
        result.why = "" if result.passed else reason
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def eval_run_execute(*, run_id: int, model: Any = None,
                     on_result: Callable[[engine.ItemResult], None] | None = None) -> EvalRun | None:
    """Run a queued eval to its end: each item judged and stored as it finishes (a restarted run skips
    the items it has), a cancel honoured between items, failures recorded on the run."""
    model = model or model_manager()
    run = _claim(run_id, model)
    if run is None:
        return None
    config = forge_settings()
    items = {i.id: i for i in suite_items(run.suite)}
    have = set(run.results.values_list("item_id", flat=True))
    budgets = _forge_budgets(run) if run.mode == "resample" else {}
    status, error = EvalRun.Status.DONE, ""
    try:
        for item_id in run.item_ids:
            if item_id in have:
                continue
            if EvalRun.objects.filter(pk=run.pk, status=EvalRun.Status.CANCELLING).exists():
                status = EvalRun.Status.CANCELLED
                break
            item = items.get(item_id)
            if item is None:  # the suite changed since the run was queued
                continue
            if isinstance(item, ToolItem):
                result = engine.run_tool_item(item, run.mode, model, config, budget=budgets.get(item_id),
                                              seed=(run.settings or {}).get("seed", engine.SEED))
            elif run.mode in ("graph", "closedbook"):
                result = run_task_graph(item, model=model, eval_run=run, retrieval=run.mode == "graph")
            else:
                result = engine.run_task_single(item, model)
            _store(run, result)
            if on_result:
                on_result(result)
    except Exception as exc:  # kept on the run and shown on the Evals page
        log.exception("eval run %s failed", run.pk)
        status, error = EvalRun.Status.FAILED, f"{type(exc).__name__}: {exc}"
    with transaction.atomic():
        EvalRun.objects.filter(pk=run.pk).update(status=status, error=error, finished=timezone.now())
        run.refresh_from_db()
        message = (f"Eval #{run.pk} {run.status}: {run.suite}/{run.mode} passed {run.passed} of {run.done} "
                   f"({run.pass_pct}%)") + (f": {error}" if error else "")
        event_publish(kind=f"evals.{run.status}", source="worker", payload={"eval_run": run.pk, "message": message})
        transaction.on_commit(lambda: eval_run_broadcast(run_id=run.pk))
    return run


def eval_run_broadcast(*, run_id: int, item_id: str | None = None) -> None:
    """Push the run's progress (its page and the Evals list) and, when given, one new result row."""
    run = EvalRun.objects.filter(pk=run_id).first()
    if run is None:
        return
    broadcast(EVALS_GROUP, "ui.html", html=render_to_string("forge/evals/_run_oob.html", {"run": run}))
    page = render_to_string("forge/evals/_head_oob.html", {"run": run, "table": category_table(run=run),
                                                           "previous": previous_run(run=run)})
    if item_id is not None:
        result = run.results.filter(item_id=item_id).first()
        if result is not None:
            page += render_to_string("forge/evals/_result_oob.html", {"result": result, "run": run})
    broadcast(group_for("eval", run.pk), "ui.html", html=page)


def task_subset(limit: int) -> list[TaskItem]:
    """`limit` tasks a single call can answer (none that needs memory, a document or the web), taken in turn
    from each category so that a small subset still spans the suite; the same ones every time."""
    by_category: dict[str, list[TaskItem]] = {}
    for item in sorted(load_tasks(), key=lambda i: i.id):
        if not (item.setup_memory or item.setup_documents or item.setup_web):
            by_category.setdefault(item.category, []).append(item)
    chosen: list[TaskItem] = []
    while len(chosen) < limit and any(by_category.values()):
        for category in sorted(by_category):
            if by_category[category] and len(chosen) < limit:
                chosen.append(by_category[category].pop(0))
    return chosen


def task_accuracy(*, persona: str, adapter: dict[str, Any], limit: int, model: Any = None,
                  on_item: Callable[[engine.ItemResult], None] | None = None) -> dict[str, Any]:
    """How many of a fixed subset of the `tasks` suite a persona answers right in one call with the given
    weights (a fine-tune's adapter, or its bare base): what the promotion gate compares."""
    model = model or model_manager()
    rows = []
    for item in task_subset(limit):
        result = engine.run_task_single(item, model, persona=persona, adapter=adapter)
        rows.append({"id": item.id, "passed": result.passed, "seconds": result.seconds})
        if on_item:
            on_item(result)
    return {"n": len(rows), "passed": sum(r["passed"] for r in rows), "rows": rows}
