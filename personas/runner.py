"""Executes one run through the cognitive graph with a checkpointer (in PostgreSQL when the product runs
on it, else a SQLite file; one thread per run), persisting every node update as a RunStep and streaming
tokens to the run's page."""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.template.loader import render_to_string
from langgraph.types import Command

from a4ps_site.cluster import LeaseKeeper
from a4ps_site.config import app_settings, codex
from a4ps_site.realtime import broadcast, group_for
from a4ps_site.throttle import TextStream
from personas import checkpoints
from personas import codex as codex_services
from personas.events import event_publish
from personas.graph import GraphDeps, GraphSettings, build_graph
from personas.llm import model_manager
from personas.models import Run
from personas.persona_state import persona_activity_set
from personas.ports import ports

log = logging.getLogger(__name__)

WAITING = "__waiting_on_amendment__"  # key in execute()'s result when the run paused for a decision


class RunCancelled(Exception):
    """The run was cancelled by a person while it was executing."""


def lease_seconds() -> int:
    return int(app_settings().get("runs", {}).get("lease_s", 60))


def checkpoint_path() -> Path:
    return settings.VAR_DIR / "checkpoints.sqlite"


def checkpointer() -> contextlib.AbstractContextManager[Any]:
    """The run's checkpointer: in PostgreSQL when the product runs on it, else var/checkpoints.sqlite."""
    return checkpoints.checkpointer(connection.settings_dict, vendor=connection.vendor, sqlite_path=checkpoint_path())


def graph_settings() -> GraphSettings:
    return GraphSettings.from_dict(app_settings().get("graph"))


def token_stream(run_id: int, persona: str, node: str, check_cancelled: Callable[[], None]) -> TextStream:
    """The speaking persona's tokens, shown on the run page in small batches (not persisted: the step
    holds the text); each batch first checks whether a person cancelled the run."""

    spoken: list[str] = []
    started = time.monotonic()

    def send(text: str, first: bool) -> None:
        # The whole contribution so far each time (a few KB at most): a page opened or reconnected
        # mid-step shows it from the next batch on instead of missing its beginning.
        spoken.append(text)
        so_far = "".join(spoken)
        seconds = max(time.monotonic() - started, 0.1)
        tokens = max(1, len(so_far) // 4)  # about four characters a token: a speed gauge, not a count
        html = render_to_string("personas/_typing_oob.html", {
            "persona": persona, "node": node, "text": so_far, "seconds": seconds, "tokens": tokens,
            "rate": tokens / seconds})
        broadcast(group_for("run", run_id), "ui.html", html=html)

    return TextStream(send, before_send=check_cancelled)


class PinnedModel:
    """The model manager with every persona speaking through one model (a run's "model" option)."""

    def __init__(self, manager: Any, model: str) -> None:
        self.manager, self.model = manager, model
        self.lock = getattr(manager, "lock", None)

    def chat(self, persona_or_model: str, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        return self.manager.chat(self.model, messages, **kwargs)

    def embed(self, texts: list[str]) -> Any:
        return self.manager.embed(texts)


def build_deps(run: Run, *, record_step: Callable[..., Any], overrides: dict[str, Any] | None = None) -> GraphDeps:
    """Connect the graph's seams to the real services for this run (memory, forge and tools through
    the ports their apps filled in)."""

    def personas() -> dict[str, Any]:
        # Read at every step: a codex change (hand edit or approved amendment) applies from the next one.
        return {name: {"system_prompt": s.system_prompt, "principles": list(s.principles)}
                for name, s in codex().items()}

    manager = model_manager()

    def check_cancelled() -> None:
        if Run.objects.filter(pk=run.pk, status=Run.Status.CANCELLING).exists():
            raise RunCancelled()

    streams: dict[str, TextStream] = {}

    def token_sink(persona: str, node: str) -> Callable[[str], None]:
        stream = token_stream(run.pk, persona, node, check_cancelled)
        streams["current"] = stream
        lock = getattr(manager, "lock", None)
        if lock is not None and hasattr(lock, "busy") and lock.busy():
            # Another job (a forge request, an eval, a fine-tune's evaluation) has the model: say so,
            # instead of a "thinking" that is really a queue.
            persona_activity_set(name=persona, activity="waiting", run_id=run.pk)
            broadcast(group_for("run", run.pk), "ui.html", html=render_to_string(
                "personas/_typing_oob.html", {"persona": persona, "node": node, "waiting": True, "text": "",
                                              "seconds": 0, "tokens": 0, "rate": 0}))
        else:
            persona_activity_set(name=persona, activity="thinking", run_id=run.pk)
        return stream

    def record(**step: Any) -> None:
        current = streams.pop("current", None)
        if current:
            current.flush()
        record_step(run_id=run.pk, **step)

    def on_dissonance(score: float, detail: dict[str, Any]) -> None:
        event_publish(kind="high_cognitive_dissonance", source="graph",
                      payload={"run": run.pk, "score": score, "message":
                               f"Run #{run.pk}: dissonance {score:.2f} between BRICK and ROBIN", **detail})

    port = ports()
    options = dict(run.options or {})
    settings_now = graph_settings()
    if options.get("max_turns"):
        settings_now = replace(settings_now, max_turns=int(options["max_turns"]))
    deps = GraphDeps(
        model=manager,
        record_step=record,
        settings=settings_now,
        token_sink=token_sink,
        memory_search=lambda query, k: port.memory_search(query, k),
        memory_write=lambda state: port.memory_write(run_id=run.pk, state=state),
        web_research=lambda query: port.web_research(query=query, run_id=run.pk),
        forge=lambda spec, **budget: port.forge(run_id=run.pk, spec=spec, **budget),
        tools=lambda: port.tool_schemas(),
        call_tool=lambda name, arguments: port.call_tool(run_id=run.pk, name=name, arguments=arguments),
        check_cancelled=check_cancelled,
        personas=personas,
        on_dissonance=on_dissonance,
        amendment_evidence=lambda: codex_services.amendment_evidence(run=run, embed=manager.embed),
        propose_amendment=lambda **draft: getattr(codex_services.amendment_propose(**draft), "pk", None),
        rejected_amendments=lambda: [
            {"persona": a.persona, "principle": a.principle, "comment": a.comment}
            for a in codex_services.rejected_amendments()
        ],
        wait_for_decision=bool(codex_services.codex_settings()["wait_for_decision"]),
        model_of=lambda persona: (manager.backend, manager.resolve(persona)[1]),
    )
    chosen: dict[str, Any] = {}
    if options.get("model"):
        chosen["model"] = PinnedModel(manager, str(options["model"]))
        chosen["model_of"] = lambda persona: (manager.backend, str(options["model"]))
    if options.get("temperature") is not None:
        chosen["chat_options"] = {"temperature": float(options["temperature"])}
    if options.get("tools") is False:
        chosen.update(tools=lambda: [], call_tool=None, forge=lambda spec, **budget: {
            "status": "off", "note": "Tools are off for this run: reason it out without one."})
    if options.get("memory") is False:
        chosen.update(memory_search=lambda query, k: [], web_research=lambda query: {"enabled": False},
                      memory_write=lambda state: {"note": "Memory is off for this run: nothing was stored."})
    return replace(deps, **{**chosen, **(overrides or {})})


def execute(run: Run, *, record_step: Callable[..., Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume, if a checkpoint exists) the graph for `run`; returns the final state.

    `record_step(run_id=, key=, node=, persona=, kind=, content=, ...)` persists each contribution;
    `overrides` replace GraphDeps fields (an eval run's own memory, say)."""
    deps = build_deps(run, record_step=record_step, overrides=overrides)
    # A model step can outlast the lease: renew it while this worker is alive.
    with LeaseKeeper(Run, run.pk, lease_seconds()), checkpointer() as saver:
        graph = build_graph(deps, checkpointer=saver)
        config = {"configurable": {"thread_id": run.thread_id}, "recursion_limit": 100}
        snapshot = graph.get_state(config)
        if snapshot.interrupts:
            amendment = run.waiting_on
            if amendment is None or amendment.status == amendment.Status.PROPOSED:
                return {**snapshot.values, WAITING: amendment.pk if amendment else None}
            inputs = Command(resume=codex_services.amendment_decision(amendment))
        elif snapshot.next:
            log.info("resuming run %s at %s", run.pk, snapshot.next)
            inputs = None
        elif snapshot.values.get("final_answer"):
            return snapshot.values
        else:
            inputs = {"run_id": run.pk, "task": run.task, "source": run.source, "step": 0}
        # durability="sync": each step's checkpoint is on disk before the next node starts.
        for _ in graph.stream(inputs, config, stream_mode="updates", durability="sync"):
            pass
        snapshot = graph.get_state(config)
        if snapshot.interrupts:
            return {**snapshot.values, WAITING: snapshot.interrupts[0].value.get("amendment")}
        return snapshot.values
