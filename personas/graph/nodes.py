"""The graph's nodes: one function per persona contribution. Each records its step and returns
only the state keys it changes."""
from __future__ import annotations

import math
import re
import time
from typing import Any

from langgraph.types import interrupt

from personas.graph import prompts
from personas.graph.state import GraphDeps, GraphState
from personas.inference import ModelOutputInvalid
from personas.inference.embeddings import cosine_similarity

_TOOL_RE = re.compile(r"^\s*\**\s*TOOL_REQUIRED\s*:\**\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)


def parse_tool_request(text: str) -> tuple[str, str]:
    """Split BRICK's text into (text without the request line, the requested tool spec or "")."""
    match = _TOOL_RE.search(text or "")
    if not match:
        return text, ""
    spec = match.group(1).strip().strip("`*").strip()
    cleaned = (text[: match.start()] + text[match.end():]).strip()
    return cleaned, spec


def _clamp01(value: Any, default: float = 0.5) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    if math.isnan(number):
        return default
    return min(1.0, max(0.0, number))


def cosine_distance(a: Any, b: Any) -> float:
    """1 - cosine similarity, clamped to 0..1 (0 = same direction; 1 when either vector is empty)."""
    return min(1.0, max(0.0, 1.0 - cosine_similarity(a, b)))


class _Step:
    """Times one node execution and names it deterministically (step number + node)."""

    def __init__(self, state: GraphState, node: str, deps: GraphDeps) -> None:
        deps.check_cancelled()
        self.deps = deps
        self.node = node
        self.number = int(state.get("step", 0)) + 1
        self.key = f"{self.number:03d}-{node}"
        self.started = time.perf_counter()
        self.parts = 0

    def record(self, *, persona: str, kind: str, content: str, data: dict | None = None, result: Any = None,
               dissonance: float | None = None) -> None:
        self.parts += 1
        key = self.key if self.parts == 1 else f"{self.key}.{self.parts}"
        self.deps.record_step(
            key=key, node=self.node, persona=persona, kind=kind, content=content, data=data or {},
            result=result, dissonance=dissonance, duration_ms=(time.perf_counter() - self.started) * 1000,
        )


def _persona(deps: GraphDeps, name: str) -> dict[str, Any] | None:
    return deps.personas().get(name)


def _chat(deps: GraphDeps, persona: str, node: str, messages: list[dict[str, str]], *, stream: bool = False,
          **kwargs: Any) -> Any:
    on_token = deps.token_sink(persona, node) if stream else None
    return deps.model.chat(persona, messages, on_token=on_token, **kwargs)


class _Unparsed:
    """Stands in for a structured reply that was not valid JSON (e.g. cut off at max_tokens)."""

    def __init__(self, error: Exception) -> None:
        self.content = ""
        self.parsed = None
        self.error = str(error)
        self.prompt_tokens = self.completion_tokens = 0
        self.total_ms = 0.0


def _chat_json(deps: GraphDeps, persona: str, node: str, messages: list[dict[str, str]], **kwargs: Any) -> Any:
    """A structured contribution; junk JSON degrades to the node's fallback instead of failing the run."""
    try:
        return _chat(deps, persona, node, messages, **kwargs)
    except ModelOutputInvalid as exc:
        return _Unparsed(exc)


def _fallback_note(result: Any) -> dict[str, Any]:
    return {"unparsed": result.error} if isinstance(result, _Unparsed) else {}


def alfred_route(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """ALFRED receives the task and decides whether BABS researches memory first."""
    step = _Step(state, "alfred_route", deps)
    result = _chat_json(deps, "ALFRED", step.node, prompts.route(_persona(deps, "ALFRED"), state),
                        json_schema=prompts.ROUTE_SCHEMA, max_tokens=deps.settings.json_max_tokens)
    verdict = result.parsed if isinstance(result.parsed, dict) else {}
    research = bool(verdict.get("research", True))
    reason = str(verdict.get("reason", "")).strip() or "No reason given."
    step.record(persona="ALFRED", kind="route", content=("BABS researches first. " if research else
                "Straight to analysis. ") + reason, data={"research": research, **_fallback_note(result)},
                result=result)
    return {"step": step.number, "research": research, "route_reason": reason}


def babs_research(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """BABS searches memory and reports what is relevant (plainly saying so when nothing is)."""
    step = _Step(state, "babs_research", deps)
    memories = deps.memory_search(state["task"], deps.settings.memory_k)
    if not memories:
        report = "Memory holds nothing relevant to this task yet."
        step.record(persona="BABS", kind="research", content=report, data={"memories": []})
        return {"step": step.number, "memories": [], "babs_report": report}
    result = _chat(deps, "BABS", step.node, prompts.research(_persona(deps, "BABS"), state["task"], memories),
                   stream=True, max_tokens=deps.settings.max_tokens)
    report = result.content.strip() or "The search found entries, but none bears on this task."
    step.record(persona="BABS", kind="research", content=report, data={"memories": memories}, result=result)
    return {"step": step.number, "memories": memories, "babs_report": report}


def brick_candidates(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """BRICK proposes k candidate lines of thought (Tree-of-Thoughts breadth)."""
    step = _Step(state, "brick_candidates", deps)
    k = deps.settings.thoughts
    result = _chat_json(deps, "BRICK", step.node, prompts.candidates(_persona(deps, "BRICK"), state, k),
                        json_schema=prompts.thoughts_schema(k), max_tokens=deps.settings.json_max_tokens)
    raw = result.parsed.get("thoughts", []) if isinstance(result.parsed, dict) else []
    thoughts = [str(t).strip() for t in raw if str(t).strip()][:k] or [result.content.strip() or state["task"]]
    step.record(persona="BRICK", kind="thoughts", content="\n".join(f"{i + 1}. {t}" for i, t in enumerate(thoughts)),
                data={"thoughts": thoughts, **_fallback_note(result)}, result=result)
    return {"step": step.number, "candidates": thoughts}


def robin_evaluate(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """ROBIN scores each candidate; the best one becomes BRICK's thesis."""
    step = _Step(state, "robin_evaluate", deps)
    thoughts = state.get("candidates", [])
    if len(thoughts) <= 1:
        step.record(persona="ROBIN", kind="evaluation", content="Only one line of thought: nothing to choose.",
                    data={"scores": [10.0], "best": 0})
        return {"step": step.number, "candidate_scores": [10.0], "best_candidate": 0}
    result = _chat_json(deps, "ROBIN", step.node, prompts.evaluate(_persona(deps, "ROBIN"), state, thoughts),
                        json_schema=prompts.evaluation_schema(len(thoughts)), max_tokens=deps.settings.json_max_tokens)
    parsed = result.parsed if isinstance(result.parsed, dict) else {}
    scores = []
    for i in range(len(thoughts)):
        try:
            scores.append(min(10.0, max(1.0, float(parsed.get("scores", [])[i]))))
        except (IndexError, TypeError, ValueError):
            scores.append(5.0)
    # The scores decide; the model's own "best" only breaks ties.
    best = max(range(len(scores)), key=lambda i: (scores[i], i == parsed.get("best")))
    comment = str(parsed.get("comment", "")).strip()
    lines = [f"{i + 1}. {s:.0f}/10{'  ← best' if i == best else ''}" for i, s in enumerate(scores)]
    step.record(persona="ROBIN", kind="evaluation", content="\n".join(lines) + (f"\n{comment}" if comment else ""),
                data={"scores": scores, "best": best, **_fallback_note(result)}, result=result)
    return {"step": step.number, "candidate_scores": scores, "best_candidate": best}


def brick_thesis(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """BRICK states (or revises) the thesis, with the live tool registry bound to the call."""
    step = _Step(state, "brick_thesis", deps)
    tools = deps.tools()
    messages = prompts.thesis(_persona(deps, "BRICK"), state)
    kwargs: dict[str, Any] = {"max_tokens": deps.settings.max_tokens}
    if tools:
        kwargs["tools"] = tools
    result = _chat(deps, "BRICK", step.node, messages, stream=True, **kwargs)
    tool_results = list(state.get("tool_results", []))
    if result.tool_calls and deps.call_tool:
        for call in result.tool_calls:
            output = deps.call_tool(call["name"], call.get("arguments", {}))
            tool_results.append({"spec": call["name"], "arguments": call.get("arguments", {}), "output": output})
            step.record(persona="BRICK", kind="tool_call", content=f"{call['name']}({call.get('arguments', {})})",
                        data={"output": output})
        followup = prompts.thesis(_persona(deps, "BRICK"), {**state, "tool_results": tool_results})
        result = _chat(deps, "BRICK", step.node, followup, stream=True, max_tokens=deps.settings.max_tokens)
    text, spec = parse_tool_request(result.content)
    text = text or "(BRICK gave no thesis.)"
    dialogue = [*state.get("dialogue", []), {"persona": "BRICK", "content": text}]
    data = {"tool_spec": spec} if spec else {}
    step.record(persona="BRICK", kind="thesis", content=text, data=data, result=result)
    update: dict[str, Any] = {"step": step.number, "thesis": text, "dialogue": dialogue, "tool_spec": spec,
                              "tool_results": tool_results}
    return update


def tool_forge(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """Hand BRICK's tool request to the forge; its outcome goes back to BRICK."""
    step = _Step(state, "tool_forge", deps)
    spec = state.get("tool_spec", "")
    outcome = deps.forge(spec) or {}
    note = outcome.get("note") or outcome.get("status", "")
    step.record(persona="BRICK", kind="tool_request", content=f"TOOL_REQUIRED: {spec}\n→ {note}",
                data={"spec": spec, **outcome})
    results = [*state.get("tool_results", []), {"spec": spec, **outcome}]
    return {"step": step.number, "tool_spec": "", "tool_requests": state.get("tool_requests", 0) + 1,
            "tool_results": results, "thesis": ""}


def robin_respond(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """ROBIN answers the thesis with an antithesis and/or a synthesis."""
    step = _Step(state, "robin_respond", deps)
    result = _chat(deps, "ROBIN", step.node, prompts.respond(_persona(deps, "ROBIN"), state), stream=True,
                   max_tokens=deps.settings.max_tokens)
    text = result.content.strip() or "(ROBIN gave no answer.)"
    dialogue = [*state.get("dialogue", []), {"persona": "ROBIN", "content": text}]
    step.record(persona="ROBIN", kind="antithesis", content=text, result=result)
    return {"step": step.number, "antithesis": text, "dialogue": dialogue}


def alfred_critic(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """Measure the BRICK↔ROBIN disagreement: embedding distance blended with ALFRED's verdict."""
    step = _Step(state, "alfred_critic", deps)
    vectors = deps.model.embed([state["thesis"], state["antithesis"]])
    distance = cosine_distance(vectors[0], vectors[1])
    result = _chat_json(deps, "ALFRED", step.node, prompts.critic(_persona(deps, "ALFRED"), state),
                        json_schema=prompts.CRITIC_SCHEMA, max_tokens=deps.settings.json_max_tokens)
    verdict = result.parsed if isinstance(result.parsed, dict) else {}
    # Without a readable verdict the embedding distance alone measures the disagreement.
    judged = _clamp01(verdict.get("dissonance"), default=distance)
    score = round(0.5 * distance + 0.5 * judged, 3)
    agree = bool(verdict.get("consensus")) or state["antithesis"].lower().startswith("i agree")
    consensus = agree and score < deps.settings.consensus_threshold
    turn = state.get("turn", 0) + 1
    reason = str(verdict.get("reason", "")).strip()
    detail = {"embedding_distance": round(distance, 3), "critic": judged, "consensus": consensus, "turn": turn,
              "reason": reason, **_fallback_note(result)}
    step.record(persona="ALFRED", kind="dissonance", content=f"Dissonance {score:.2f} — {reason or 'no reason given'}",
                data=detail, result=result, dissonance=score)
    update: dict[str, Any] = {"step": step.number, "dissonance": [*state.get("dissonance", []), score],
                              "consensus": consensus, "turn": turn}
    if score > deps.settings.dissonance_threshold:
        deps.on_dissonance(score, detail)
        if not state.get("amendment_considered"):
            update["amendment_considered"] = True
            update["amend_evidence"] = deps.amendment_evidence()
    return update


def alfred_amend(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """Persistent dissonance: ALFRED drafts one codex amendment for a person to decide on."""
    step = _Step(state, "alfred_amend", deps)
    rejected = deps.rejected_amendments()
    messages = prompts.amendment(_persona(deps, "ALFRED"), state, deps.personas(), rejected)
    result = _chat_json(deps, "ALFRED", step.node, messages, json_schema=prompts.AMENDMENT_SCHEMA,
                        max_tokens=deps.settings.json_max_tokens)
    draft = result.parsed if isinstance(result.parsed, dict) else {}
    persona = str(draft.get("persona", "")).upper()
    principle = str(draft.get("principle", "")).strip()
    rationale = str(draft.get("rationale", "")).strip()
    amendment_id = None
    if persona in {"ALFRED", "BRICK", "ROBIN", "BABS"} and principle:
        amendment_id = deps.propose_amendment(persona=persona, principle=principle, rationale=rationale,
                                              evidence=list(state.get("amend_evidence", [])))
    if amendment_id:
        content = f"Proposed for {persona}: “{principle}”\nWhy: {rationale}\nAwaiting a person's decision."
    else:
        content = "No new amendment: the draft repeated one already rejected or pending, or was empty."
    step.record(persona="ALFRED", kind="amendment", content=content,
                data={"amendment": amendment_id, "persona": persona, "principle": principle}, result=result)
    return {"step": step.number, "amendment_id": amendment_id or 0}


def await_decision(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """Pause the run until a person approves or rejects the amendment in the admin."""
    decision = interrupt({"amendment": state["amendment_id"]})
    step = _Step(state, "await_decision", deps)
    status = decision.get("status", "?") if isinstance(decision, dict) else str(decision)
    comment = decision.get("comment", "") if isinstance(decision, dict) else ""
    step.record(persona="ALFRED", kind="decision",
                content=f"Amendment #{state['amendment_id']} {status}" + (f": {comment}" if comment else "."),
                data=decision if isinstance(decision, dict) else {"status": status})
    return {"step": step.number, "amendment_decision": decision if isinstance(decision, dict) else {}}


def alfred_synthesis(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """ALFRED writes the final answer from the whole discussion."""
    step = _Step(state, "alfred_synthesis", deps)
    result = _chat(deps, "ALFRED", step.node, prompts.synthesis(_persona(deps, "ALFRED"), state), stream=True,
                   max_tokens=deps.settings.max_tokens)
    answer = result.content.strip() or state.get("thesis", "")
    step.record(persona="ALFRED", kind="answer", content=answer, result=result)
    return {"step": step.number, "final_answer": answer}


def memory_write(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """Store the run in memory (summary + dialogue chunks) so later runs can retrieve it."""
    step = _Step(state, "memory_write", deps)
    stored = deps.memory_write(dict(state))
    if stored:
        step.record(persona="BABS", kind="memory", content=stored.get("note", "Stored in memory."), data=stored)
    else:
        step.record(persona="BABS", kind="memory", content="Memory is not available: nothing was stored.")
    return {"step": step.number}


def route_after_alfred(state: GraphState) -> str:
    return "babs_research" if state.get("research") else "brick_candidates"


def route_after_thesis(state: GraphState, *, max_tool_requests: int) -> str:
    if state.get("tool_spec") and state.get("tool_requests", 0) < max_tool_requests:
        return "tool_forge"
    return "robin_respond"


def route_after_critic(state: GraphState, *, max_turns: int) -> str:
    if state.get("amend_evidence") and "amendment_id" not in state:
        return "alfred_amend"
    if state.get("consensus") or state.get("turn", 0) >= max_turns:
        return "alfred_synthesis"
    return "brick_thesis"


def route_after_amend(state: GraphState, *, max_turns: int, wait: bool) -> str:
    if state.get("amendment_id") and wait:
        return "await_decision"
    return route_after_critic(state, max_turns=max_turns)
