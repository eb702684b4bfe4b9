"""Writes of the forge app: forge requests and their attempts, tools and versions, tool calls."""
from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from a4ps_site.cluster import abandoned
from a4ps_site.realtime import broadcast, group_for
from a4ps_site.throttle import TextStream
from forge import registry as registry_mod
from forge import sandbox
from forge.config import forge_settings
from forge.models import ForgeAttempt, ForgeRequest, Tool, ToolCall, ToolVersion
from forge.selectors import pool_status_dir, selftest_latest, selftest_path
from forge.toolforge import (
    AttemptReport,
    ForgeBudget,
    assert_checks,
    forge_loop,
    judge,
    judge_text,
    snake_calls,
    spec_checks,
    static_check,
    tests_source,
)
from personas.events import event_publish
from personas.llm import model_manager

log = logging.getLogger(__name__)


def _request_group(request_id: int) -> str:
    return group_for("forge", request_id)


def forge_request_broadcast(*, request: ForgeRequest) -> None:
    """Push the request's header (status, phase) to its page."""
    html = render_to_string("forge/_request_head.html", {"req": request, "oob": True})
    broadcast(_request_group(request.pk), "ui.html", html=html)


def forge_request_create(*, spec: str, source: str = ForgeRequest.Source.USER, run_id: int | None = None,
                         user: Any = None, enqueue: bool = True) -> ForgeRequest:
    """Record a spec for the forge; with enqueue, a Huey worker runs it after commit (the worker task
    subscribes to "forge.queued" in ForgeConfig.ready()); without, the caller runs it itself."""
    spec = (spec or "").strip()
    limit = forge_settings().max_spec_chars
    if not spec:
        raise ValueError("The spec is empty: describe the function the tool should be.")
    if "\x00" in spec:
        raise ValueError("The spec contains a NUL character; remove it and send the text again.")
    if len(spec) > limit:
        raise ValueError(f"The spec is {len(spec):,} characters long; the limit is {limit:,}.")
    if source not in ForgeRequest.Source.values:
        raise ValueError(f"Unknown forge request source {source!r}.")
    with transaction.atomic():
        request = ForgeRequest.objects.create(spec=spec, source=source, run_id=run_id,
                                              created_by=user if getattr(user, "pk", None) else None)
        event_publish(kind="forge.queued", source="forge" if source == "graph" else "architect",
                      payload={"forge_request": request.pk, "run": run_id, "inline": not enqueue,
                               "message": f"Forge request #{request.pk}: {spec[:140]}"})
    return request


def _set(request: ForgeRequest, **fields: Any) -> None:
    for key, value in fields.items():
        setattr(request, key, value)
    ForgeRequest.objects.filter(pk=request.pk).update(**fields)
    transaction.on_commit(lambda: forge_request_broadcast(request=request))


def forge_attempt_record(*, request: ForgeRequest, report: AttemptReport) -> ForgeAttempt:
    """Keep one attempt (idempotent per number) and show it on the request's page."""
    fields = {
        "reply": report.reply, "code": report.code, "tests": report.tests, "static_ok": report.static_ok,
        "static_errors": report.static_errors, "exit_code": report.exit_code, "stdout": report.stdout,
        "stderr": report.stderr, "duration_s": report.duration_s, "killed_reason": report.killed_reason or "",
        "backend": report.backend, "passed": report.passed, "error": report.error, "model_ms": report.model_ms,
    }
    with transaction.atomic():
        attempt, _ = ForgeAttempt.objects.update_or_create(request=request, number=report.number, defaults=fields)
        html = render_to_string("forge/_attempt_oob.html", {"attempt": attempt})
        transaction.on_commit(lambda: broadcast(_request_group(request.pk), "ui.html", html=html))
    return attempt


def _code_stream(request_id: int, number: int) -> TextStream:
    """BRICK's code as it is generated, shown on the request page in small batches."""

    written: list[str] = []

    def send(text: str, first: bool) -> None:
        # The whole code so far each time: a page opened mid-attempt shows it from the next batch on.
        written.append(text)
        html = render_to_string("forge/_typing_oob.html", {"number": number, "text": "".join(written)})
        broadcast(_request_group(request_id), "ui.html", html=html)

    return TextStream(send)


def forge_request_execute(*, request: ForgeRequest, model: Any = None,
                          on_attempt: Callable[[AttemptReport], None] | None = None,
                          budget: ForgeBudget | None = None) -> ForgeRequest:
    """Run the forge loop for a request: attempts are recorded and shown live (and handed to
    `on_attempt`); on success the tool (without its tests) is saved as a new version and loaded into
    the live registry. `budget`: what the asking run has left (bounds the attempts after the first)."""
    config = forge_settings()
    model = model or model_manager()
    _set(request, status=ForgeRequest.Status.RUNNING, started=timezone.now(), phase="starting", error="")
    streamers: dict[int, TextStream] = {}

    def on_phase(number: int, phase: str) -> None:
        words = {"writing": f"attempt {number}: BRICK is writing the code",
                 "testing": f"attempt {number}: running the tests in the sandbox"}[phase]
        if phase == "testing" and number in streamers:
            streamers[number].flush()
        _set(request, phase=words)

    def on_token(number: int) -> Callable[[str], None]:
        streamers[number] = _code_stream(request.pk, number)
        return streamers[number]

    def attempt_done(report: AttemptReport) -> None:
        if report.number in streamers:
            streamers[report.number].flush()
        forge_attempt_record(request=request, report=report)
        if on_attempt:
            on_attempt(report)

    try:
        outcome = forge_loop(request.spec, model=model, config=config, on_attempt=attempt_done, on_phase=on_phase,
                             on_token=on_token, budget=budget)
    except Exception as exc:  # kept on the request and shown on its page; the worker carries on
        log.exception("forge request %s failed", request.pk)
        return _finish_failed(request, f"{type(exc).__name__}: {exc}")
    if not outcome.ok:
        return _finish_failed(request, outcome.error)
    try:
        version = tool_version_create(name=outcome.name, code=outcome.code, tests=outcome.tests, spec=request.spec,
                                      run_id=request.run_id)
    except Exception as exc:
        log.exception("forge request %s: could not register the tool", request.pk)
        return _finish_failed(request, f"the tool passed its tests but could not be registered: {exc}")
    with transaction.atomic():
        _set(request, status=ForgeRequest.Status.SUCCEEDED, tool_version=version, finished=timezone.now(),
             phase=f"{version} is live", notes="\n".join(outcome.notes))
        signature = registry_mod.signature_text(version.code, version.tool.name)
        event_publish(kind="tool_created", source="forge", payload={
            "tool": version.tool.name, "version": version.number, "forge_request": request.pk,
            "run": request.run_id, "attempts": len(outcome.attempts),
            "message": f"Tool {signature} v{version.number} forged in {len(outcome.attempts)} attempt(s) "
                       "and loaded into the registry",
        })
    # Load it now so this process's next tool listing has it; other processes see the stamp change.
    registry_mod.registry().refresh(force=True)
    return request


def forge_request_overrule(*, request: ForgeRequest, number: int, user: Any, tests: str | None = None
                           ) -> ToolVersion:
    """A person overrules the forge on a failed request: register attempt `number`'s function as it is
    (`tests` None: e.g. when only BRICK's own wrong assertion failed it), or judged in the sandbox by
    the person's own test lines (`assert name(…) == …`) plus the request's examples, registered only
    if they all pass. Recorded as the person's decision on the request and in the system log."""
    if request.status != ForgeRequest.Status.FAILED:
        raise ValueError(f"Request #{request.pk} is {request.status}: only a failed request can be overruled.")
    attempt = request.attempts.filter(number=number).first()
    if attempt is None:
        raise ValueError(f"Request #{request.pk} has no attempt {number}.")
    config = forge_settings()
    check = static_check(attempt.code, "", config.allowed_imports) if attempt.code.strip() else None
    if check is None or not check.ok:
        problems = "; ".join(check.errors) if check else "it has no code"
        raise ValueError(f"Attempt {number} cannot be registered: {problems}")
    name = check.name
    if tests is None:
        kept = attempt.tests
        decision = f"{user} registered attempt {number} despite the forge's verdict: {attempt.error or 'failed'}"
    else:
        checks = assert_checks(tests, name) + spec_checks(snake_calls(request.spec), name)
        if not assert_checks(tests, name):
            raise ValueError(f"No test case found: write one line per case, like `assert {name}(…) == …`.")
        verdict = judge(attempt.code, checks, backend=config.backend, limits=config.limits)
        failed = [c for c, r in zip(checks, verdict.results, strict=False) if not r.get("ok")]
        if verdict.import_error or failed:
            raise ValueError("Not registered: the function fails these checks.\n" + judge_text(checks, verdict))
        kept = tests_source(name, checks)
        decision = f"{user} registered attempt {number}: it passes the tests they wrote ({len(checks)} checks)"
    version = tool_version_create(name=name, code=attempt.code, tests=kept, spec=request.spec, run_id=request.run_id)
    with transaction.atomic():
        _set(request, status=ForgeRequest.Status.SUCCEEDED, tool_version=version, finished=timezone.now(),
             phase=f"{version} is live", error=decision)
        event_publish(kind="tool_created", source="architect", payload={
            "tool": name, "version": version.number, "forge_request": request.pk, "run": request.run_id,
            "decided_by": str(user), "message": f"Tool {name} v{version.number} registered by a person: {decision}"})
    registry_mod.registry().refresh(force=True)
    return version


def tool_delete(*, tool: Tool, by: Any) -> int:
    """Delete a tool with its versions, files and call records; returns the versions removed."""
    name = tool.name
    versions = tool.versions.count()
    folder = Path(settings.SHARED_DIR) / "tools" / name
    with transaction.atomic():
        Tool.objects.filter(pk=tool.pk).update(current_version=None)
        Tool.objects.filter(pk=tool.pk).delete()
        event_publish(kind="tool_deleted", source="architect", payload={
            "tool": name, "versions": versions, "message": f"Tool {name} deleted by {by} ({versions} version(s))"})
    shutil.rmtree(folder, ignore_errors=True)
    registry_mod.registry().refresh(force=True)
    return versions


def _finish_failed(request: ForgeRequest, error: str) -> ForgeRequest:
    with transaction.atomic():
        _set(request, status=ForgeRequest.Status.FAILED, finished=timezone.now(), error=error, phase="gave up")
        event_publish(kind="forge.failed", source="forge", payload={
            "forge_request": request.pk, "run": request.run_id,
            "message": f"Forge request #{request.pk} failed: {error[:200]}"})
    return request


@transaction.atomic
def tool_version_create(*, name: str, code: str, tests: str, spec: str, run_id: int | None = None) -> ToolVersion:
    """Save a tested function as the next version of tool `name` (created if new) and make it current."""
    schema = registry_mod.schema_from_source(code, name)
    tool, _ = Tool.objects.select_for_update().get_or_create(name=name)
    number = (tool.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    version = ToolVersion.objects.create(tool=tool, number=number, code=code, tests=tests, spec=spec,
                                         schema=schema, source_run_id=run_id)
    path = version.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code, encoding="utf-8")
    tool.current_version = version
    tool.enabled = True
    tool.save()
    return version


def tool_set_enabled(*, tool: Tool, enabled: bool) -> Tool:
    """Enable or disable a tool; every process drops or loads it on its next registry read."""
    with transaction.atomic():
        tool = Tool.objects.select_for_update().get(pk=tool.pk)
        tool.enabled = enabled
        tool.save()
        event_publish(kind="tool_enabled" if enabled else "tool_disabled", source="architect",
                      payload={"tool": tool.name,
                               "message": f"Tool {tool.name} {'enabled' if enabled else 'disabled'}"})
    return tool


def tool_offer_again(*, tool: Tool) -> Tool:
    """Offer a tool that sat idle to BRICK again: its idle count starts afresh from now."""
    with transaction.atomic():
        tool = Tool.objects.select_for_update().get(pk=tool.pk)
        tool.offered_since = timezone.now()
        tool.save()
        event_publish(kind="tool_offered", source="architect",
                      payload={"tool": tool.name, "message": f"Tool {tool.name} offered to BRICK again"})
    registry_mod.registry().refresh(force=True)
    return tool


def tool_rollback(*, tool: Tool, number: int) -> Tool:
    """Make an earlier (or any) version of a tool the current one."""
    with transaction.atomic():
        tool = Tool.objects.select_for_update().get(pk=tool.pk)
        version = tool.versions.filter(number=number).first()
        if version is None:
            raise ValueError(f"Tool {tool.name} has no version {number}.")
        if tool.current_version_id == version.pk:
            raise ValueError(f"Version {number} of {tool.name} is already the current one.")
        tool.current_version = version
        tool.save()
        event_publish(kind="tool_rolled_back", source="architect",
                      payload={"tool": tool.name, "version": number,
                               "message": f"Tool {tool.name} rolled back to v{number}"})
    return tool


def tool_call(*, name: str, arguments: dict[str, Any], run_id: int | None = None) -> ToolCall | None:
    """Call an enabled tool in the sandbox and record the call; None if no such tool is enabled."""
    config = forge_settings()
    outcome = registry_mod.registry().call(name, arguments, backend=config.backend, limits=config.limits)
    if outcome.version_id is None:
        return None
    return ToolCall.objects.create(
        tool_version_id=outcome.version_id, arguments=arguments if isinstance(arguments, dict) else {},
        result=outcome.result if outcome.ok else None, ok=outcome.ok, error=outcome.error,
        duration_s=outcome.duration_s, backend=outcome.backend, run_id=run_id,
    )


# --- what the cognitive graph calls (through the kernel's ports, plugged in by ForgeConfig.ready()) ---

def forge_for_graph(*, run_id: int | None, spec: str, model: Any = None, tokens_left: int | None = None,
                    seconds_left: float | None = None) -> dict[str, Any]:
    """BRICK asked for a tool mid-run: forge it now (the run is already in a worker) and say how it went,
    with the tokens the forge generated ("tokens": the run counts them against its budget). The run's
    budget left (`tokens_left`, `seconds_left`; None: no limit) bounds the attempts after the first.
    A run resumed after a crash asks again: the request it made before is reused (finished: its outcome;
    cut short by the crash: run again from its first attempt), never duplicated."""
    spec = spec[: forge_settings().max_spec_chars]
    spent: list[int] = []
    budget = (ForgeBudget(tokens=tokens_left, seconds=seconds_left)
              if tokens_left is not None or seconds_left is not None else None)

    def execute(request: ForgeRequest) -> ForgeRequest:
        return forge_request_execute(request=request, model=model, budget=budget,
                                     on_attempt=lambda report: spent.append(report.tokens))

    earlier = (ForgeRequest.objects.filter(run_id=run_id, spec=spec.strip(), source=ForgeRequest.Source.GRAPH)
               .order_by("-id").first() if run_id else None)
    if earlier is not None and earlier.status in (ForgeRequest.Status.QUEUED, ForgeRequest.Status.RUNNING):
        earlier.attempts.all().delete()  # the dead worker's partial attempts
        request = execute(earlier)
    elif earlier is not None:
        request = earlier
    else:
        try:
            request = forge_request_create(spec=spec, source=ForgeRequest.Source.GRAPH, run_id=run_id, enqueue=False)
        except ValueError as exc:
            return {"status": "failed", "note": f"The forge refused the request: {exc}", "tool": "", "tokens": 0}
        request = execute(request)
    if request.status == ForgeRequest.Status.SUCCEEDED and request.tool_version:
        version = request.tool_version
        signature = registry_mod.signature_text(version.code, version.tool.name)
        return {"status": "created", "tool": version.tool.name, "forge_request": request.pk, "tokens": sum(spent),
                "note": f"The tool {signature} was forged (v{version.number}, tests passed in the sandbox) "
                        "and is now available to you: call it to compute the result."}
    return {"status": "failed", "tool": "", "forge_request": request.pk, "tokens": sum(spent),
            "note": f"The forge could not build this tool: {request.error}. Reason it out without the tool."}


def forge_requests_recover(*, requeue: Callable[[int], Any]) -> dict[str, int]:
    """Requests a dead worker left running (at worker start, and every minute on one worker). A person's
    request whose lease ran out (or whose process on this node is gone) goes back to the queue, its
    partial attempts removed, and `requeue(id)` runs it; a run's request is taken up again when the run
    resumes, unless the run is over — then it is failed with the reason."""
    counts = {"requeued": 0, "failed": 0}
    running = ForgeRequest.objects.filter(status=ForgeRequest.Status.RUNNING)
    for request in [*running.filter(source=ForgeRequest.Source.GRAPH),
                    *abandoned(running.filter(source=ForgeRequest.Source.USER))]:
        if request.source == ForgeRequest.Source.GRAPH:
            if request.run is not None and request.run.is_active:
                continue
            _set(request, status=ForgeRequest.Status.FAILED, finished=timezone.now(), phase="",
                 error="The worker stopped during this request and its run is over.")
            counts["failed"] += 1
            continue
        # Only if nobody renewed or took it since it was read: the update is the claim.
        still = abandoned(ForgeRequest.objects.filter(pk=request.pk, status=ForgeRequest.Status.RUNNING,
                                                      worker=request.worker))
        who = request.worker or "the worker"
        if still.update(status=ForgeRequest.Status.QUEUED, phase=f"queued again after {who} stopped", error="",
                        worker="", lease_until=None):
            request.attempts.all().delete()
            counts["requeued"] += 1
            requeue(request.pk)
    if any(counts.values()):
        event_publish(kind="forge.recovered", source="worker", payload={**counts, "message": (
            f"Forge requests left by a stopped worker: {counts['requeued']} queued again, {counts['failed']} failed")})
    return counts


def tool_call_for_graph(*, name: str, arguments: Any, run_id: int | None = None) -> Any:
    """A model's tool call: the result value, or {"error": ...} the model can read."""
    call = tool_call(name=name, arguments=arguments if isinstance(arguments, dict) else {"_raw": arguments},
                     run_id=run_id)
    if call is None:
        known = ", ".join(sorted(registry_mod.registry().tools())) or "none"
        return {"error": f"there is no enabled tool named {name!r} (available: {known})"}
    return call.result if call.ok else {"error": call.error}


# ------------------------------------------------------------------------------- the warm pool
def _pool_status_write(status: dict[str, Any]) -> None:
    """The worker's warm pool, as a file the web process shows on the Forge page (one per worker)."""
    folder = pool_status_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**status, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)


def _pool_stop() -> None:
    """At the worker's exit: its warm sandboxes go with it, and so does its status file."""
    for backend in sandbox.ORDER:
        sandbox.get_backend(backend).stop_pool()
    (pool_status_dir() / f"{os.getpid()}.json").unlink(missing_ok=True)


def sandbox_pool_start() -> dict[str, Any] | None:
    """A worker keeps `forge.warm_pool` sandboxes of its backend started ahead of need (containers, or
    launched runners), with the forge's limits; removed again when the worker exits. None when no
    sandbox backend is available."""
    config = forge_settings()
    status = sandbox.configure_warm_pool(config.warm_pool, config.limits, config.backend,
                                         on_change=_pool_status_write)
    if status is not None:
        _pool_status_write(status)
        atexit.register(_pool_stop)
    return status


# ---------------------------------------------------------------------------- the self-test
def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _selftest_write(state: dict[str, Any]) -> None:
    path = selftest_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


def selftest_start(*, backends: list[str], quick: bool, by: str, enqueue: Callable[[], Any] | None = None
                   ) -> dict[str, Any]:
    """Queue the sandbox self-test (all attacks or the quick ones) on the named backends; refused while
    one is queued or running."""
    unknown = [b for b in backends if b not in sandbox.ORDER]
    if not backends or unknown:
        raise ValueError(f"Choose backends among {', '.join(sandbox.ORDER)}" + (f" (not {', '.join(unknown)})"
                                                                                 if unknown else ""))
    latest = selftest_latest()
    if latest and latest.get("status") in ("queued", "running") and not latest.get("stale"):
        raise ValueError("A sandbox self-test is already under way.")
    state = {"status": "queued", "backends": backends, "quick": quick, "by": by,
             "queued": _now(), "reports": [], "done": 0,
             "total": len(backends) * sum(1 for a in _selftest_attacks(quick))}
    _selftest_write(state)
    if enqueue is not None:
        enqueue()
    return state


def _selftest_attacks(quick: bool) -> list[Any]:
    from forge.selftest import ATTACKS

    return [a for a in ATTACKS if a.quick or not quick]


def selftest_execute() -> dict[str, Any]:
    """Run the queued self-test here, writing the matrix after every attack so the page can follow."""
    from forge.selftest import Report, run_selftest

    state = selftest_latest() or {}
    if state.get("status") != "queued":
        return state
    state.update(status="running", pid=os.getpid(), started=_now())
    _selftest_write(state)
    columns: dict[str, dict[str, Any]] = {}

    def on_cell(backend: str, cell: Any) -> None:
        column = columns.setdefault(backend, {"backend": backend, "available": True, "reason": "", "cells": []})
        column["cells"].append(cell.as_dict())
        state["reports"] = list(columns.values())
        state["done"] = sum(len(c["cells"]) for c in columns.values())
        _selftest_write(state)

    try:
        reports: list[Report] = run_selftest(state["backends"], quick=bool(state.get("quick")), on_cell=on_cell)
    except Exception as exc:  # noqa: BLE001 - the page says what broke instead of spinning forever
        log.exception("sandbox self-test failed")
        state.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    else:
        state.update(status="done", reports=[r.as_dict() for r in reports],
                     escapes=sum(len(r.escapes) for r in reports), weak_limits=sum(len(r.weak_limits) for r in reports))
    state["finished"] = _now()
    _selftest_write(state)
    return state
