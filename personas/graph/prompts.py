"""Prompt builders and JSON schemas for each persona's contribution."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from personas.graph import citations

TOOL_LINE = "TOOL_REQUIRED:"
# Free-text fields inside JSON replies are bounded, so a small model's reply ends inside json_max_tokens
# instead of being cut off mid-string (which loses the whole reply).
SHORT = 160

ROUTE_SCHEMA = {
    "type": "object",
    "properties": {"research": {"type": "boolean"}, "reason": {"type": "string", "maxLength": SHORT}},
    "required": ["research", "reason"],
}

CRITIC_SCHEMA = {
    "type": "object",
    "properties": {
        "dissonance": {"type": "number"},
        "consensus": {"type": "boolean"},
        "reason": {"type": "string", "maxLength": SHORT},
    },
    "required": ["dissonance", "consensus", "reason"],
}


def thoughts_schema(k: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "thoughts": {"type": "array", "items": {"type": "string", "maxLength": 2 * SHORT},
                         "minItems": k, "maxItems": k},
        },
        "required": ["thoughts"],
    }


def evaluation_schema(k: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "scores": {"type": "array", "items": {"type": "integer"}, "minItems": k, "maxItems": k},
            "best": {"type": "integer"},
            "comment": {"type": "string", "maxLength": SHORT},
        },
        "required": ["scores", "best", "comment"],
    }


_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)([bm])(?![a-z])", re.IGNORECASE)
LARGE_FROM_B = 3.0  # models from this many billion parameters get the richer prompts


def model_billions(name: str) -> float | None:
    """Parameters in billions as a model's name states them: "gemma2:9b" 9, "…-coder-1.5b-instruct…" 1.5,
    "SmolLM2-135M-…" 0.135; None when the name does not say ("phi3:mini")."""
    match = _SIZE.search(name or "")
    if not match:
        return None
    number = float(match.group(1))
    return number / 1000 if match.group(2).lower() == "m" else number


def prompt_size(style: str, backend: str, model: str) -> str:
    """"small" (short prompts, one job per call) or "large" (fuller instructions): the setting, or with
    "auto" the model's size; a model whose name gives no size is large on Ollama, small embedded."""
    if style in ("small", "large"):
        return style
    billions = model_billions(model)
    if billions is not None:
        return "large" if billions >= LARGE_FROM_B else "small"
    return "large" if backend == "ollama" else "small"


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
    # A report that found nothing adds nothing (and a small model copies it into its answer).
    if state.get("babs_report") and state.get("memories"):
        parts.append(f"BABS's research report:\n{state['babs_report']}")
        # The retrieved texts themselves, not only BABS's account of them: a small model's report may
        # drop the one fact that matters.
        parts.append(sources_block(state))
        if key := key_lines_block(state):
            parts.append(key)
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
        f"[{i + 1}] ({(m.get('source') or {}).get('label') or 'run ' + str(m.get('run_id', '?'))}) {m.get('text', '')}"
        for i, m in enumerate(memories)
    )
    return [
        system(persona, "You are BABS, the researcher."),
        {"role": "user", "content": (
            f"Task: {task}\n\nMemory search results:\n{listing}\n\n"
            "Report in a few sentences what in these results is relevant to the task, citing them as [n]."
        )},
    ]


def candidates(persona: dict[str, Any] | None, state: Mapping[str, Any], k: int,
               size: str = "small") -> list[dict[str, str]]:
    ask = (f"Propose {k} distinct candidate lines of thought for approaching this task, one or two sentences "
           f"each. Reply as JSON: {{\"thoughts\": [{k} strings]}}.")
    if size == "large":
        ask = (f"Propose {k} candidate lines of thought that differ in method, not only in wording: for example "
               "computing it directly, checking it from another side, or questioning what the task takes for "
               "granted. Each is one or two sentences that say what you would do and why it could work. "
               f"Reply as JSON: {{\"thoughts\": [{k} strings]}}.")
    return [system(persona, "You are BRICK, the analyst."), {"role": "user", "content": f"{_context(state)}\n\n{ask}"}]


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


def thesis(persona: dict[str, Any] | None, state: Mapping[str, Any], size: str = "small") -> list[dict[str, str]]:
    msgs = [system(persona, "You are BRICK, the analyst.")]
    chosen = ""
    cands = state.get("candidates") or []
    if cands:
        chosen = cands[min(max(state.get("best_candidate", 0), 0), len(cands) - 1)]
    if not state.get("thesis"):
        prompt = f"{_context(state)}\n\n"
        if chosen:
            prompt += f"Develop this line of thought into your thesis: {chosen}\n\n"
        if size == "large":
            prompt += ("Give your thesis. First say what exactly is asked and which facts you have; then reason "
                       "step by step to an answer, checking each computation; end with the answer itself in one "
                       "sentence. If an exact computation would be more reliable as a small tested function, "
                       f"end instead with one line '{TOOL_LINE} <function name>(<inputs>) returns <result>, "
                       "e.g. <a call> == <its result>' (a pure function of its inputs, not the task itself).")
        else:
            prompt += ("Give your thesis: a clear answer with its justification, step by step. "
                       "Only if an exact computation is beyond you, end with one line "
                       f"'{TOOL_LINE} <function name>(<inputs>) returns <result>, e.g. <a call> == <its result>'.")
    else:
        prompt = (f"{_context(state)}\n\nYour previous thesis:\n{state['thesis']}\n\n"
                  f"ROBIN answered:\n{state.get('antithesis', '')}\n\n"
                  "Revise your thesis: keep what holds, answer ROBIN's objections, and say where you now agree.")
    msgs.append({"role": "user", "content": prompt})
    return msgs


def respond(persona: dict[str, Any] | None, state: Mapping[str, Any], size: str = "small") -> list[dict[str, str]]:
    ask = ("Answer it: where you disagree give your antithesis, where you can, a synthesis. "
           "If you fully agree, begin with 'I agree'. Keep it short.")
    if size == "large":
        ask = ("Examine it as a careful colleague: redo its key computation or check its key claim, name any "
               "error, gap or unkind wording, and give your antithesis where you disagree. Then offer a synthesis "
               "that keeps what holds. If after checking you fully agree, begin with 'I agree' and say what you "
               "checked. A short paragraph.")
    return [
        system(persona, "You are ROBIN, the synthesiser."),
        {"role": "user", "content": f"{_context(state)}\n\nBRICK's thesis:\n{state['thesis']}\n\n{ask}"},
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


# The sources a prompt shows, whole (a chunk is at most documents.chunk_chars plus its heading line; a
# clipped one loses the fact at its end), the most relevant first; the rest stay in BABS's report.
SOURCES_SHOWN = 3
SOURCE_CHARS = 1200


def sources_block(state: Mapping[str, Any]) -> str:
    """The retrieved sources, numbered as BABS cited them, for the prompts that may cite them."""
    memories = state.get("memories") or []
    if not memories:
        return ""
    lines = []
    for i, m in enumerate(memories[:SOURCES_SHOWN], start=1):
        label = (m.get("source") or {}).get("label", "")
        text = " ".join(str(m.get("text", "")).split())
        lines.append(f"[{i}] {label + ': ' if label else ''}{text[:SOURCE_CHARS]}")
    return "Sources:\n" + "\n".join(lines)


KEY_LINES = 2  # lines quoted at most, when several score the same

# The headers of the blocks the prompts below are built from: a reply that goes on with one of them
# after its answer is copying its prompt (quality.cut_prompt_blocks).
BLOCK_HEADERS = ("Sources:", "Where the sources speak to the task:", "The team's discussion:",
                 "Your own first answer, before the team's discussion:", "Your previous thesis:", "ROBIN answered:",
                 "BRICK's thesis:", "BRICK said:", "BABS's research report:", "Memory search results:",
                 "BRICK's candidate lines of thought:", "Notes from the team:")


def key_lines_block(state: Mapping[str, Any]) -> str:
    """The sentence of the most relevant source that speaks to the task best (see citations.key_lines),
    quoted with its number — or the few that score the same: a small model reading a whole document
    answers from its first fact; pointed at the line, from the right one. Only the first source is read:
    a line of a less relevant one that shares a word with the task is more often another place's fact
    than the answer. Empty when no line of it shares a word with the task."""
    best = key_lines(state)
    if not best:
        return ""
    return "Where the sources speak to the task:\n" + "\n".join(f'[1] "{line}"' for line in best)


def key_lines(state: Mapping[str, Any]) -> list[str]:
    """The lines key_lines_block quotes, unquoted (those of source [1])."""
    memories = state.get("memories") or []
    found = citations.key_lines(state["task"], memories[0]) if memories else []
    return [line for score, line in found if score == found[0][0]][:KEY_LINES]


_CITE = " Where you use a source, cite it by its number, like [1]."


def first_answer(state: Mapping[str, Any]) -> list[dict[str, str]]:
    """ALFRED's own answer before the team's work: the task as a person would ask it (with the sources
    BABS found, when there are any), nothing else — the answer one call of the model gives."""
    if state.get("memories"):
        blocks = "".join(f"{block}\n\n" for block in (sources_block(state), key_lines_block(state)) if block)
        return [{"role": "user", "content": f"{blocks}{state['task']}"}]
    return [{"role": "user", "content": state["task"]}]


def synthesis(persona: dict[str, Any] | None, state: Mapping[str, Any], size: str = "small") -> list[dict[str, str]]:
    turns = "\n\n".join(f"{t['persona']}: {t['content']}" for t in state.get("dialogue", []))
    ask = ("Write the final answer for the person who asked: clear, complete and honest about uncertainty. "
           "Do not describe the discussion; answer the task.")
    if size == "large":
        ask = ("Write the final answer for the person who asked. Where BRICK and ROBIN still disagree, decide "
               "yourself by checking the point against the task and the facts above. Give the answer first, then "
               "a short justification, and say plainly what remains uncertain. Do not describe the discussion.")
    first = ""
    if state.get("first_answer"):
        first = f"\n\nYour own first answer, before the team's discussion:\n{state['first_answer']}"
        keep = ("Keep your first answer unless a fact, a tool result or a mistake the team found shows it wrong; "
                "then give the corrected answer.")
        ask = (f"{ask} {keep}" if size == "large" else
               f"Write the final answer for the person who asked. {keep} Do not describe the discussion; "
               "answer the task.")
    if state.get("memories"):
        ask += _CITE  # the context lists the sources, numbered
    # After a long discussion the line that answers and the task itself are far back: both come again
    # next to the ask (a small model otherwise answers the discussion, not the question).
    key = key_lines_block(state)
    ask = f"{key}\n\nThe task: {state['task']}\n{ask}" if key else ask
    return [
        system(persona, "You are ALFRED, the supervisor."),
        {"role": "user", "content": f"{_context(state)}{first}\n\nThe team's discussion:\n{turns}\n\n{ask}"},
    ]


AMENDMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "persona": {"type": "string", "enum": ["ALFRED", "BRICK", "ROBIN", "BABS"]},
        "principle": {"type": "string", "maxLength": 2 * SHORT},
        "rationale": {"type": "string", "maxLength": 2 * SHORT},
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


# Second asks, when the first reply was hollow: shorter, one job, no room to echo the instructions.

def candidates_retry(persona: dict[str, Any] | None, state: Mapping[str, Any], k: int) -> list[dict[str, str]]:
    return [
        system(persona, "You are BRICK, the analyst."),
        {"role": "user", "content": (
            f"Task: {state['task']}\n\nName {k} different ways to work on this task. Each is one short "
            "sentence of your own that starts with a verb; do not repeat the task. "
            f"Reply as JSON: {{\"thoughts\": [{k} strings]}}."
        )},
    ]


def thesis_retry(persona: dict[str, Any] | None, state: Mapping[str, Any]) -> list[dict[str, str]]:
    known = "".join(f"\n\nKnown: {text}" for text in _facts(state))
    known += "".join(f"\n\n{block}" for block in (sources_block(state), key_lines_block(state)) if block)
    return [
        system(persona, "You are BRICK, the analyst."),
        {"role": "user", "content": f"{state['task']}{known}\n\nAnswer this directly, in two to five sentences."},
    ]


def _facts(state: Mapping[str, Any]) -> list[str]:
    """What the run found out: BABS's report and the tools' results (for the short second asks)."""
    facts = [state["babs_report"]] if state.get("memories") and state.get("babs_report") else []
    for result in state.get("tool_results", []):
        if result.get("output") is not None:
            facts.append(f"{result.get('spec', '')} gave {result.get('output')}")
    return facts


def respond_retry(persona: dict[str, Any] | None, state: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        system(persona, "You are ROBIN, the synthesiser."),
        {"role": "user", "content": (
            f"Task: {state['task']}\n\nBRICK's answer: {state['thesis']}\n\n"
            "Is this answer right and kind to the person asking? Say what you would change, in two sentences. "
            "If nothing, begin with 'I agree'."
        )},
    ]


def grounded_answer(persona: dict[str, Any] | None, state: Mapping[str, Any], key: str) -> list[dict[str, str]]:
    """ALFRED asked once more from the sources alone, with the line that speaks to the task last: when the
    team's answer used nothing of it (the discussion talked the team away from the source)."""
    return [
        system(persona, "You are ALFRED, the supervisor."),
        {"role": "user", "content": (
            f"{sources_block(state)}\n\n{key}\n\nTask: {state['task']}\n\n"
            "Answer the task from the sources, in one or two sentences." + _CITE
        )},
    ]


def synthesis_retry(persona: dict[str, Any] | None, state: Mapping[str, Any], notes: str) -> list[dict[str, str]]:
    return [
        system(persona, "You are ALFRED, the supervisor."),
        {"role": "user", "content": (
            f"{state['task']}\n\n" + "".join(f"Known: {text}\n\n" for text in _facts(state)) +
            f"Notes from the team:\n{notes or '(none)'}\n\n"
            + "".join(f"{block}\n\n" for block in (sources_block(state), key_lines_block(state)) if block)
            + "Answer the task above for the person who asked, in a few sentences."
            + (_CITE if state.get("memories") else "")
        )},
    ]
