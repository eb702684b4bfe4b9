"""Orchestration overhead of the cognitive graph: everything but model time (checkpoint, RunStep
write, broadcast through the real broker), per step, next to plain LangGraph + SqliteSaver on a
graph of the same shape with no-op nodes.

    .venv/bin/python bench/graph.py [--runs 20]
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR = Path(tempfile.mkdtemp(prefix="a4ps-bench-graph-"))
os.environ.update(A4PS_VAR_DIR=str(VAR), DJANGO_SETTINGS_MODULE="a4ps_site.settings", A4PS_HUEY_IMMEDIATE="false")
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402

from a4ps_site import broker  # noqa: E402
from personas.graph.graph import NODES  # noqa: E402
from personas.llm import set_model_manager  # noqa: E402
from personas.models import Run, RunStep  # noqa: E402
from personas.persona_state import persona_sync_from_codex  # noqa: E402
from tests.personas.scripted import ScriptedModel  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def a4ps_intervals(runs: int) -> list[float]:
    """Step-to-step intervals (ms) of real runs with an instant model."""
    set_model_manager(ScriptedModel())
    intervals: list[float] = []
    for i in range(runs):
        run = Run.objects.create(task=f"What is {i} + {i}?")
        claimed = runs.run_claim_next(worker="bench:1", lease_s=60)
        runs.run_execute(run=claimed)
        assert Run.objects.get(pk=run.pk).status == Run.Status.DONE, Run.objects.get(pk=run.pk).error
        stamps = list(RunStep.objects.filter(run=run).order_by("seq").values_list("created", flat=True))
        intervals += [(b - a).total_seconds() * 1000 for a, b in zip(stamps, stamps[1:])]
    return intervals


def plain_intervals(runs: int, steps_per_run: int) -> list[float]:
    """The same number of steps through plain LangGraph + SqliteSaver, no-op nodes in a chain."""
    from typing import TypedDict

    class S(TypedDict, total=False):
        task: str
        step: int

    stamps: list[float] = []

    def node(state: S) -> dict:
        stamps.append(time.perf_counter())
        return {"step": state.get("step", 0) + 1}

    names = [f"{NODES[i % len(NODES)]}_{i}" for i in range(steps_per_run)]
    graph = StateGraph(S)
    for name in names:
        graph.add_node(name, node)
    graph.add_edge(START, names[0])
    for a, b in zip(names, names[1:]):
        graph.add_edge(a, b)
    graph.add_edge(names[-1], END)
    conn = sqlite3.connect(VAR / "plain-checkpoints.sqlite", check_same_thread=False)
    compiled = graph.compile(checkpointer=SqliteSaver(conn))
    intervals: list[float] = []
    for i in range(runs):
        stamps.clear()
        for _ in compiled.stream({"task": "t", "step": 0}, {"configurable": {"thread_id": f"plain-{i}"}},
                                 stream_mode="updates", durability="sync"):
            pass
        intervals += [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])]
    conn.close()
    return intervals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    proc = broker.start_embedded(settings.BROKER_SOCKET, VAR / "broker")
    try:
        call_command("migrate", verbosity=0)
        persona_sync_from_codex()
        a4ps = a4ps_intervals(args.runs)
        steps_per_run = len(a4ps) // args.runs + 1
        plain = plain_intervals(args.runs, steps_per_run)
    finally:
        proc.terminate()
        proc.wait()
    result = {
        "runs": args.runs, "steps_per_run": steps_per_run,
        "a4ps_p50_ms": round(statistics.median(a4ps), 2), "a4ps_p95_ms": round(pct(a4ps, 0.95), 2),
        "plain_p50_ms": round(statistics.median(plain), 2), "plain_p95_ms": round(pct(plain, 0.95), 2),
    }
    result["ratio_p50"] = round(result["a4ps_p50_ms"] / result["plain_p50_ms"], 2)
    print(f"{'path':<34} {'p50 ms/step':>12} {'p95 ms/step':>12}")
    print(f"{'A4PS (checkpoint+RunStep+broadcast)':<34} {result['a4ps_p50_ms']:>12} {result['a4ps_p95_ms']:>12}")
    print(f"{'plain LangGraph + SqliteSaver':<34} {result['plain_p50_ms']:>12} {result['plain_p95_ms']:>12}")
    print(f"ratio (p50): {result['ratio_p50']}x over {args.runs} runs of {steps_per_run} steps; model time is zero")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
