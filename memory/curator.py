"""The curator: ALFRED judges finished runs; the best become golden examples per persona."""
from __future__ import annotations

import logging
import tomllib
from typing import Any

from django.db import transaction

from a4ps_site.config import ConfigError, app_settings, codex, parse_codex
from memory.datasets.services import Judgement, verdict_record
from memory.services import memory_forget_run
from personas.events import event_publish
from personas.graph import prompts
from personas.inference import ModelError, ModelOutputInvalid
from personas.llm import model_manager
from personas.models import CodexVersion, Run, RunStep

log = logging.getLogger(__name__)

CRITERIA = ("reasoning", "persona_fidelity", "helpfulness")

RUBRIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{name: {"type": "integer", "minimum": 1, "maximum": 10} for name in CRITERIA},
        # Bounded so a small model's verdict fits in max_tokens and stays valid JSON.
        "rationale": {"type": "string", "maxLength": 300},
    },
    "required": [*CRITERIA, "rationale"],
}

DEFAULTS: dict[str, Any] = {
    "threshold": 7.0,  # mean rubric score (1..10) a run needs to become golden
    "forget_below": 4.0,  # a run judged below this mean score is removed from memory (0 = keep everything)
    "batch": 5,  # runs judged per curator pass; the periodic task picks up the rest
    "max_tokens": 200,  # ALFRED's verdict is short JSON
    "transcript_chars": 6000,  # how much of the run ALFRED reads
    "interval_min": 10,
}

# The step kinds that are a persona's own free-text turn, and the prompt the graph built for it.
_TURN_KINDS = {"research", "thesis", "antithesis", "answer"}


def curator_settings() -> dict[str, Any]:
    """[curator] from settings.toml over the defaults; a bad value falls back with a logged warning."""
    raw = app_settings().get("curator", {})
    out = dict(DEFAULTS)
    if not isinstance(raw, dict):
        log.warning("[curator] must be a table; using the defaults")
        return out
    for key, default in DEFAULTS.items():
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            log.warning("[curator] %s=%r is not a non-negative number; using %r", key, value, default)
            value = default
        out[key] = type(default)(value)
    return out


# --- reconstructing what each persona saw -----------------------------------------------------------

def _personas_for(run: Run) -> dict[str, dict[str, Any]]:
    """The persona prompts in force when the run executed (its codex version), else the current codex."""
    specs = None
    if run.codex_version:
        version = CodexVersion.objects.filter(number=run.codex_version).first()
        if version is not None:
            try:
                specs = parse_codex(tomllib.loads(version.text))
            except (tomllib.TOMLDecodeError, ConfigError):
                specs = None
    specs = specs or codex()
    return {name: {"system_prompt": s.system_prompt, "principles": list(s.principles)} for name, s in specs.items()}


def conversations_from_run(run: Run, steps: list[RunStep] | None = None) -> dict[str, list[dict[str, str]]]:
    """Each persona's free-text turns as one chat: its system prompt, then per turn the user prompt the
    graph gave it (rebuilt from the steps before it, with the same prompt builders) and its reply."""
    steps = steps if steps is not None else list(run.steps.order_by("seq"))
    personas = _personas_for(run)
    state: dict[str, Any] = {"task": run.task, "dialogue": [], "tool_results": []}
    chats: dict[str, list[dict[str, str]]] = {}

    def add_turn(persona: str, messages: list[dict[str, str]], reply: str) -> None:
        chat = chats.setdefault(persona, [messages[0]])
        chat.extend(messages[1:])
        chat.append({"role": "assistant", "content": reply})

    for step in steps:
        data = step.data or {}
        persona = personas.get(step.persona)
        if step.kind == "research":
            memories = data.get("memories") or []
            if memories:  # without memories BABS was not asked anything
                add_turn("BABS", prompts.research(persona, run.task, memories), step.content)
            state["babs_report"] = step.content
            state["memories"] = memories  # the graph shows BABS's report only when memories were found
        elif step.kind == "thoughts":
            state["candidates"] = list(data.get("thoughts") or [])
        elif step.kind == "evaluation":
            state["best_candidate"] = int(data.get("best") or 0)
        elif step.kind == "tool_call":
            name, _, _ = step.content.partition("(")
            state["tool_results"] = [*state["tool_results"], {"spec": name, "output": data.get("output")}]
        elif step.kind == "tool_request":
            state["tool_results"] = [*state["tool_results"], dict(data)]
            state["thesis"] = ""
        elif step.kind == "thesis":
            add_turn("BRICK", prompts.thesis(persona, state), step.content)
            state["thesis"] = step.content
            state["dialogue"] = [*state["dialogue"], {"persona": "BRICK", "content": step.content}]
        elif step.kind == "antithesis":
            add_turn("ROBIN", prompts.respond(persona, state), step.content)
            state["antithesis"] = step.content
            state["dialogue"] = [*state["dialogue"], {"persona": "ROBIN", "content": step.content}]
        elif step.kind == "answer":
            add_turn("ALFRED", prompts.synthesis(persona, state), step.content)
    return chats


# --- judging ------------------------------------------------------------------------------------------

def _transcript(run: Run, steps: list[RunStep], limit: int) -> str:
    lines = [f"{s.persona} ({s.kind}): {s.content.strip()}" for s in steps if s.kind in _TURN_KINDS | {"dissonance"}]
    text = "\n\n".join(lines)
    if len(text) > limit:
        text = text[: limit // 2] + "\n…\n" + text[-limit // 2:]
    return text


def judge_messages(run: Run, steps: list[RunStep], *, transcript_chars: int) -> list[dict[str, str]]:
    """The prompt ALFRED judges a run with."""
    persona = _personas_for(run).get("ALFRED")
    return [
        prompts.system(persona, "You are ALFRED, the supervisor and critic."),
        {"role": "user", "content": (
            f"Judge this finished run as training material for the team.\n\nTask: {run.task}\n\n"
            f"Transcript:\n{_transcript(run, steps, transcript_chars)}\n\nFinal answer:\n{run.final_answer}\n\n"
            "Score from 1 (poor) to 10 (exemplary): reasoning (sound, step by step), persona_fidelity (each "
            "persona acts in its role and principles), helpfulness (the final answer serves the person). "
            "Add a one- or two-sentence rationale. Reply as JSON."
        )},
    ]


def _score(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return min(10.0, max(1.0, number))


def judge_run(run: Run, steps: list[RunStep], *, model: Any, settings: dict[str, Any]) -> Judgement:
    """Ask ALFRED for the rubric; junk output becomes a Judgement with an error (the run is not retried)."""
    messages = judge_messages(run, steps, transcript_chars=int(settings["transcript_chars"]))
    try:
        result = model.chat("ALFRED", messages, json_schema=RUBRIC_SCHEMA, max_tokens=int(settings["max_tokens"]),
                            temperature=0)
    except ModelOutputInvalid as exc:
        return Judgement(scores={}, total=None, rationale="", model="", error=str(exc))
    parsed = result.parsed if isinstance(result.parsed, dict) else {}
    scores = {name: _score(parsed.get(name)) for name in CRITERIA}
    missing = [name for name, value in scores.items() if value is None]
    if missing:
        return Judgement(scores={k: v for k, v in scores.items() if v is not None}, total=None,
                         rationale=str(parsed.get("rationale", "")), model=getattr(result, "model", ""),
                         error=f"ALFRED's verdict lacks a usable score for {', '.join(missing)}")
    total = round(sum(scores.values()) / len(scores), 2)  # type: ignore[arg-type]
    return Judgement(scores=scores, total=total, rationale=str(parsed.get("rationale", "")).strip(),  # type: ignore[arg-type]
                     model=getattr(result, "model", ""))


def runs_to_judge(*, limit: int) -> list[Run]:
    """Finished runs without a verdict, oldest first."""
    return list(Run.objects.filter(status=Run.Status.DONE, curator_verdict__isnull=True).order_by("id")[:limit])


def curate(*, limit: int | None = None, model: Any = None) -> dict[str, int]:
    """One curator pass: judge up to `limit` unjudged finished runs and store golden examples for the
    good ones. Returns counts {judged, accepted, examples, duplicates, failed}."""
    settings = curator_settings()
    model = model or model_manager()
    limit = int(settings["batch"]) if limit is None else limit
    counts = {"judged": 0, "accepted": 0, "examples": 0, "duplicates": 0, "failed": 0, "forgotten": 0}
    for run in runs_to_judge(limit=limit):
        steps = list(run.steps.order_by("seq"))
        try:
            judgement = judge_run(run, steps, model=model, settings=settings)
        except ModelError as exc:
            # The model is unreachable or missing: leave the run unjudged for the next pass.
            counts["failed"] += 1
            event_publish(kind="curator.failed", source="curator",
                          payload={"run": run.pk, "message": f"Curator could not judge run #{run.pk}: {exc}"})
            break
        outcome = verdict_record(run=run, judgement=judgement, threshold=float(settings["threshold"]),
                                 conversations=conversations_from_run(run, steps))
        counts["judged"] += 1
        forget_below = float(settings["forget_below"])
        if judgement.total is not None and not judgement.error and judgement.total < forget_below:
            # A poor answer must not come back to haunt later runs through BABS.
            if memory_forget_run(run_id=run.pk, by="curator",
                                 reason=f"the curator scored it {judgement.total:.1f}/10 (below {forget_below:g})"):
                counts["forgotten"] += 1
        counts["accepted"] += int(outcome["accepted"])
        counts["examples"] += outcome["examples"]
        counts["duplicates"] += outcome["duplicates"]
    if counts["judged"]:
        with transaction.atomic():
            event_publish(kind="curator.pass", source="curator", payload={**counts, "message": (
                f"Curator judged {counts['judged']} run(s): {counts['accepted']} accepted, "
                f"{counts['examples']} new golden example(s), {counts['duplicates']} duplicate(s) skipped"
                + (f", {counts['forgotten']} poor answer(s) removed from memory" if counts["forgotten"] else ""))})
    return counts

