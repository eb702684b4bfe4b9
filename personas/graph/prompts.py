"""Prompt builders and JSON schemas for each persona's contribution."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TOOL_LINE = "TOOL_REQUIRED:"

ROUTE_SCHEMA = {
    "type": "object",
    "properties": {"research": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["research", "reason"],
}

CRITIC_SCHEMA = {
    "type": "object",
    "properties": {
        "dissonance": {"type": "number"},
        "consensus": {"type": "boolean"},
        "reason": {"type": "string"},
    },
    "required": ["dissonance", "consensus", "reason"],
}


def thoughts_schema(k: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "thoughts": {"type": "array", "items": {"type": "string"}, "minItems": k, "maxItems": k},
        },
        "required": ["thoughts"],
    }


def evaluation_schema(k: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "scores": {"type": "array", "items": {"type": "integer"}, "minItems": k, "maxItems": k},
            "best": {"type": "integer"},
            "comment": {"type": "string"},
        },
        "required": ["scores", "best", "comment"],
    }


def system(persona: dict[str, Any] | None, fallback: str) -> dict[str, str]:
    """The persona's system prompt from the codex, with its principles."""
    if not persona:
        return {"role": "system", "content": fallback}
    principles = "\n".join(f"- {p}" for p in persona.get("principles", []))
    text = persona.get("system_prompt", fallback)
    if principles:
        text += f"\nYour principles:\n{principles}"
    return {"role": "system", "content": text}


def _context(state: Mapping[str, Any]) -> str:
    parts = [f"Task: {state['task']}"]
    if state.get("babs_report"):
        parts.append(f"BABS's research report:\n{state['babs_report']}")
    for result in state.get("tool_results", []):
        parts.append(f"Tool result for '{result.get('spec', '')}': {result.get('note') or result.get('output', '')}")
    return "\n\n".join(parts)


def route(persona: dict[str, Any] | None, state: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        system(persona, "You are ALFRED, the supervisor."),
        {"role": "user", "content": (
            f"Task: {state['task']}\n\nShould BABS search the team's memory before the analysis starts? "
            "Answer research=true when earlier conversations or stored facts could matter. "
            "Reply as JSON with research and a one-sentence reason."
        )},
    ]


def research(persona: dict[str, Any] | None, task: str, memories: list[dict[str, Any]]) -> list[dict[str, str]]:
    listing = "\n".join(
        f"[{i + 1}] (run {m.get('run_id', '?')}) {m.get('text', '')}" for i, m in enumerate(memories)
    )
    return [
        system(persona, "You are BABS, the researcher."),
        {"role": "user", "content": (
            f"Task: {task}\n\nMemory search results:\n{listing}\n\n"
            "Report in a few sentences what in these results is relevant to the task, citing them as [n]."
        )},
    ]


def candidates(persona: dict[str, Any] | None, state: Mapping[str, Any], k: int) -> list[dict[str, str]]:
    return [
        system(persona, "You are BRICK, the analyst."),
        {"role": "user", "content": (
            f"{_context(state)}\n\nPropose {k} distinct candidate lines of thought for approaching this task, "
            f"one or two sentences each. Reply as JSON: {{\"thoughts\": [{k} strings]}}."
        )},
    ]


def evaluate(persona: dict[str, Any] | None, state: Mapping[str, Any], thoughts: list[str]) -> list[dict[str, str]]:
    listing = "\n".join(f"{i}. {t}" for i, t in enumerate(thoughts))
    return [
        system(persona, "You are ROBIN, the synthesiser."),
        {"role": "user", "content": (
            f"{_context(state)}\n\nBRICK's candidate lines of thought:\n{listing}\n\n"
            "Score each from 1 (poor) to 10 (excellent) for how well it serves the person asking, "
            "name the index of the best one, and comment in one sentence. Reply as JSON."
        )},
    ]


def thesis(persona: dict[str, Any] | None, state: Mapping[str, Any]) -> list[dict[str, str]]:
    msgs = [system(persona, "You are BRICK, the analyst.")]
    chosen = ""
    cands = state.get("candidates") or []
    if cands:
        chosen = cands[min(max(state.get("best_candidate", 0), 0), len(cands) - 1)]
    if not state.get("thesis"):
        prompt = f"{_context(state)}\n\n"
        if chosen:
            prompt += f"Develop this line of thought into your thesis: {chosen}\n\n"
        prompt += ("Give your thesis: a clear answer with its justification, step by step. "
                   f"If you need a computation or data you cannot produce by reasoning, end with one line "
                   f"'{TOOL_LINE} <precise description of the function you need>'.")
    else:
        prompt = (f"{_context(state)}\n\nYour previous thesis:\n{state['thesis']}\n\n"
                  f"ROBIN answered:\n{state.get('antithesis', '')}\n\n"
                  "Revise your thesis: keep what holds, answer ROBIN's objections, and say where you now agree.")
    msgs.append({"role": "user", "content": prompt})
    return msgs


def respond(persona: dict[str, Any] | None, state: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        system(persona, "You are ROBIN, the synthesiser."),
        {"role": "user", "content": (
            f"{_context(state)}\n\nBRICK's thesis:\n{state['thesis']}\n\n"
            "Answer it: where you disagree give your antithesis, where you can, a synthesis. "
            "If you fully agree, begin with 'I agree'. Keep it short."
        )},
    ]


def critic(persona: dict[str, Any] | None, state: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        system(persona, "You are ALFRED, the critic."),
        {"role": "user", "content": (
            f"Task: {state['task']}\n\nBRICK said:\n{state['thesis']}\n\nROBIN answered:\n{state['antithesis']}\n\n"
            "How far apart are they? Reply as JSON: dissonance from 0.0 (full agreement) to 1.0 "
            "(opposed), consensus true if they now agree on the answer, and a one-sentence reason."
        )},
    ]


def synthesis(persona: dict[str, Any] | None, state: Mapping[str, Any]) -> list[dict[str, str]]:
    turns = "\n\n".join(f"{t['persona']}: {t['content']}" for t in state.get("dialogue", []))
    return [
        system(persona, "You are ALFRED, the supervisor."),
        {"role": "user", "content": (
            f"{_context(state)}\n\nThe team's discussion:\n{turns}\n\n"
            "Write the final answer for the person who asked: clear, complete and honest about uncertainty. "
            "Do not describe the discussion; answer the task."
        )},
    ]


AMENDMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "persona": {"type": "string", "enum": ["ALFRED", "BRICK", "ROBIN", "BABS"]},
        "principle": {"type": "string"},
        "rationale": {"type": "string"},
    },
    "required": ["persona", "principle", "rationale"],
}


def amendment(persona: dict[str, Any] | None, state: Mapping[str, Any], personas: dict[str, Any],
              rejected: list[dict[str, str]]) -> list[dict[str, str]]:
    codex = "\n".join(f"{name}: " + "; ".join(p.get("principles", [])) for name, p in personas.items())
    refused = "\n".join(f"- {r['persona']}: {r['principle']} (rejected: {r['comment']})" for r in rejected)
    prompt = (
        f"BRICK and ROBIN keep disagreeing on related tasks (runs {state.get('amend_evidence', [])}). "
        f"Latest task: {state['task']}\nBRICK: {state.get('thesis', '')}\nROBIN: {state.get('antithesis', '')}\n\n"
        f"Current principles:\n{codex}\n\n"
    )
    if refused:
        prompt += f"A person already rejected these amendments; do not propose them again:\n{refused}\n\n"
    prompt += ("Propose ONE new principle for one persona that would resolve this kind of disagreement, "
               "with a short rationale. A person will review it. Reply as JSON.")
    return [system(persona, "You are ALFRED, the guardian of the codex."), {"role": "user", "content": prompt}]
