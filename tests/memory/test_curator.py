"""The curator: ALFRED judges finished runs; good ones become golden examples per persona, once."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from memory.curator import RUBRIC_SCHEMA, conversations_from_run, curate
from memory.models import CuratorVerdict, GoldenDataset, GoldenExample
from personas.models import Event, Run, RunStep

pytestmark = pytest.mark.django_db



@dataclass
class Verdict:
    content: str
    parsed: Any
    model: str = "judge-double"


class Judge:
    """Scores runs by task: tasks containing "good" get high marks, others low ones."""

    def __init__(self, junk: bool = False) -> None:
        self.calls: list[dict] = []
        self.junk = junk

    def chat(self, persona, messages, *, json_schema=None, max_tokens=None, temperature=None, **_):
        self.calls.append({"persona": persona, "messages": messages, "schema": json_schema})
        if self.junk:
            return Verdict(content="I think it was fine.", parsed=None)
        good = "good" in messages[-1]["content"]
        value = {"reasoning": 9 if good else 3, "persona_fidelity": 8 if good else 4,
                 "helpfulness": 9 if good else 2, "rationale": "Clear and grounded." if good else "Vague."}
        return Verdict(content=json.dumps(value), parsed=value)


def _run(task: str, *, status: str = Run.Status.DONE, thesis: str = "Four, by counting.") -> Run:
    run = Run.objects.create(task=task, status=status, final_answer="The answer is 4.")
    steps = [
        ("001-alfred_route", "ALFRED", "route", "Straight to analysis.", {"research": False}),
        ("002-brick_candidates", "BRICK", "thoughts", "1. Count.\n2. Recall.", {"thoughts": ["Count.", "Recall."]}),
        ("003-robin_evaluate", "ROBIN", "evaluation", "1. 9/10", {"scores": [9, 5], "best": 0}),
        ("004-brick_thesis", "BRICK", "thesis", thesis, {}),
        ("005-robin_respond", "ROBIN", "antithesis", "I agree: four.", {}),
        ("006-alfred_critic", "ALFRED", "dissonance", "Dissonance 0.10", {}),
        ("007-alfred_synthesis", "ALFRED", "answer", "The answer is 4.", {}),
    ]
    for seq, (key, persona, kind, content, data) in enumerate(steps, start=1):
        RunStep.objects.create(run=run, seq=seq, key=key, node=key[4:], persona=persona, kind=kind,
                               content=content, data=data)
    return run


def test_a_good_run_becomes_golden_examples_with_the_prompts_each_persona_saw(personas_seeded):
    run = _run("A good question: what is 2 + 2?")
    judge = Judge()
    counts = curate(model=judge)

    assert counts["judged"] == 1 and counts["accepted"] == 1 and counts["examples"] == 3
    assert judge.calls[0]["persona"] == "ALFRED" and judge.calls[0]["schema"] == RUBRIC_SCHEMA
    verdict = CuratorVerdict.objects.get(run=run)
    assert verdict.accepted and verdict.total == pytest.approx(26 / 3, abs=0.01)
    assert set(verdict.scores) == {"reasoning", "persona_fidelity", "helpfulness"}

    brick = GoldenExample.objects.get(dataset__persona="BRICK")
    roles = [m["role"] for m in brick.messages]
    assert roles == ["system", "user", "assistant"]
    assert "BRICK" in brick.messages[0]["content"]  # the codex system prompt
    assert "2 + 2" in brick.messages[1]["content"] and "Count." in brick.messages[1]["content"]
    assert brick.messages[2]["content"] == "Four, by counting."
    robin = GoldenExample.objects.get(dataset__persona="ROBIN")
    assert "Four, by counting." in robin.messages[1]["content"]  # ROBIN saw BRICK's thesis
    assert robin.run_id == run.pk and robin.score == verdict.total and robin.rationale == "Clear and grounded."
    alfred = GoldenExample.objects.get(dataset__persona="ALFRED")
    assert "BRICK: Four, by counting." in alfred.messages[1]["content"]
    assert GoldenDataset.objects.get(persona="BRICK").last_curated is not None
    assert Event.objects.filter(kind="curator.accepted", payload__run=run.pk).exists()


def test_a_weak_run_is_judged_once_and_kept_out(personas_seeded):
    run = _run("A vague question")
    judge = Judge()
    curate(model=judge)
    curate(model=judge)
    assert len(judge.calls) == 1  # the stored verdict stops a second judgement
    verdict = CuratorVerdict.objects.get(run=run)
    assert not verdict.accepted and verdict.total < 7
    assert not GoldenExample.objects.exists()


def test_unfinished_runs_wait_and_junk_verdicts_are_recorded_not_retried(personas_seeded):
    _run("A good one still running", status=Run.Status.RUNNING)
    failed = _run("A good one that failed", status=Run.Status.FAILED)
    done = _run("A good one")
    judge = Judge(junk=True)
    assert curate(model=judge)["judged"] == 1
    verdict = CuratorVerdict.objects.get()
    assert verdict.run_id == done.pk and not verdict.accepted and "lacks a usable score" in verdict.error
    assert not CuratorVerdict.objects.filter(run=failed).exists()


def test_the_same_conversation_is_stored_once(personas_seeded):
    _run("A good question: what is 2 + 2?")
    _run("A good question: what is 2 + 2?")
    counts = curate(model=Judge())
    assert counts["accepted"] == 2 and counts["examples"] == 3 and counts["duplicates"] == 3
    assert GoldenExample.objects.count() == 3


def test_threshold_comes_from_settings(personas_seeded, config_dir):
    settings_toml = config_dir / "settings.toml"
    settings_toml.write_text(settings_toml.read_text() + "\n[curator]\nthreshold = 9.5\n")
    _run("A good question")
    assert curate(model=Judge())["accepted"] == 0
    assert CuratorVerdict.objects.get().total < 9.5


def test_research_and_tool_steps_shape_the_reconstructed_prompts(personas_seeded):
    run = Run.objects.create(task="Look up the boiling point", status=Run.Status.DONE)
    memories = [{"run_id": 3, "text": "Water boils at 100 C at sea level."}]
    rows = [
        ("BABS", "research", "Memory [1] says 100 C.", {"memories": memories}),
        ("BRICK", "tool_request", "TOOL_REQUIRED: thermo\n→ forged", {"spec": "thermo", "note": "forged ok"}),
        ("BRICK", "thesis", "100 C at sea level.", {}),
    ]
    for seq, (persona, kind, content, data) in enumerate(rows, start=1):
        RunStep.objects.create(run=run, seq=seq, key=f"{seq:03d}", node=kind, persona=persona, kind=kind,
                               content=content, data=data)
    chats = conversations_from_run(run)
    assert "Water boils at 100 C" in chats["BABS"][1]["content"]
    brick_prompt = chats["BRICK"][1]["content"]
    assert "BABS's research report:\nMemory [1] says 100 C." in brick_prompt
    assert "Tool result for 'thermo': forged ok" in brick_prompt
