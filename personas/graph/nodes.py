"""The graph's nodes: one function per persona contribution. Each records its step and returns
only the state keys it changes."""
from __future__ import annotations

import math
import re
import time
from typing import Any

from langgraph.types import interrupt

from personas.graph import citations, prompts, quality
from personas.graph.state import GraphDeps, GraphSettings, GraphState
from personas.inference import ModelOutputInvalid
from personas.inference.embeddings import cosine_similarity

# A request line, also as a small model dresses it: "#### TOOL_REQUIRED:", "- **TOOL_REQUIRED:**", "2. TOOL_REQUIRED:".
# One mark per repetition, so that a long run of "#" or "*" is read in linear time.
_TOOL_RE = re.compile(r"^[ \t]*(?:(?:[#>*-]|\d+[.)])[ \t]*)*TOOL_REQUIRED[ \t]*:\**[ \t]*(.+?)[ \t]*$",
                      re.MULTILINE | re.IGNORECASE)


def parse_tool_request(text: str) -> tuple[str, str]:
    """Split BRICK's text into (text without any request line, the requested tool spec or ""). Every
    request line leaves the text (the request goes to the forge, not into the thesis); the spec is the
    first that is not the prompt's template copied back."""
    specs = [m.group(1).strip().strip("`*").strip() for m in _TOOL_RE.finditer(text or "")]
    if not specs:
        return text, ""
    kept = "\n".join(line for line in text.splitlines() if not _TOOL_RE.match(line))
    cleaned = re.sub(r"\n{3,}", "\n\n", kept).strip()
    return cleaned, next((spec for spec in specs if spec and not quality.template_copy(spec)), "")


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


class StepCut(Exception):
    """A contribution is stopped and what it generated so far kept: past graph.step_seconds, or (with
    `until`) once it said what was needed (a complete TOOL_REQUIRED line, say)."""

    def __init__(self, reason: str = "time") -> None:
        super().__init__(reason)
        self.reason = reason


class _Step:
    """Times one node execution, names it deterministically (step number + node) and adds up what its
    model calls spent: generated tokens, and seconds spent waiting for the model lock (not step time)."""

    def __init__(self, state: GraphState, node: str, deps: GraphDeps) -> None:
        deps.check_cancelled()
        self.state = state
        self.deps = deps
        self.node = node
        self.number = int(state.get("step", 0)) + 1
        self.key = f"{self.number:03d}-{node}"
        self.started = time.perf_counter()
        self.parts = 0
        self.tokens = 0
        self.waited = 0.0
        self.fallbacks: list[str] = []

    def spend(self, result: Any) -> None:
        self.tokens += int(getattr(result, "completion_tokens", 0) or 0)
        self.waited += float(getattr(result, "wait_ms", 0.0) or 0.0) / 1000

    def budget(self) -> dict[str, Any]:
        """The run's budgets as spent so far, for the run page's budget bar."""
        settings, state = self.deps.settings, self.state
        started = state.get("started_at") or self.deps.clock()
        elapsed = max(0.0, self.deps.clock() - started - state.get("waited_s", 0.0) - self.waited)
        return {"tokens": state.get("tokens_used", 0) + self.tokens, "tokens_max": settings.run_tokens,
                "seconds": round(elapsed, 1), "seconds_max": settings.run_seconds}

    def record(self, *, persona: str, kind: str, content: str, data: dict | None = None, result: Any = None,
               dissonance: float | None = None) -> None:
        self.parts += 1
        key = self.key if self.parts == 1 else f"{self.key}.{self.parts}"
        data = {**(data or {}), "budget": self.budget()}
        if self.waited >= 0.5:
            data["waited_s"] = round(self.waited, 1)
        duration = (time.perf_counter() - self.started - self.waited) * 1000
        self.deps.record_step(
            key=key, node=self.node, persona=persona, kind=kind, content=content, data=data,
            result=result, dissonance=dissonance, duration_ms=max(0.0, duration),
        )

    def fallback(self, what: str) -> None:
        self.fallbacks.append(what)

    def update(self, **changes: Any) -> dict[str, Any]:
        """The node's state update, with what this step spent added to the run's totals."""
        out = {"step": self.number, "tokens_used": self.tokens, "waited_s": round(self.waited, 3), **changes}
        if self.fallbacks:
            out["fallbacks"] = self.fallbacks
        return out


def _persona(deps: GraphDeps, name: str) -> dict[str, Any] | None:
    return deps.personas().get(name)


def _size(deps: GraphDeps, name: str) -> str:
    """"small" or "large" prompts for this persona: graph.prompt_style, or by its model's size."""
    backend, model = deps.model_of(name)
    return prompts.prompt_size(deps.settings.prompt_style, backend, model)


class _Partial:
    """A contribution cut at graph.step_seconds: the text generated so far stands as the reply."""

    def __init__(self, text: str, *, started: float, reason: str = "time") -> None:
        self.content = text
        self.parsed = None
        self.tool_calls: list[dict[str, Any]] = []
        self.reason = reason
        self.error = {"time": "cut off at the step's time limit", "budget": "cut off when the run's time budget "
                      "ran out"}.get(reason, "stopped once complete")
        self.prompt_tokens = 0
        self.completion_tokens = max(1, len(text) // 4) if text else 0
        self.total_ms = (time.perf_counter() - started) * 1000


def _run_seconds_left(step: _Step) -> float | None:
    """Seconds the run's time budget has left (None without one): waits for the model don't count."""
    settings, state = step.deps.settings, step.state
    if not settings.run_seconds or not state.get("started_at"):
        return None
    spent = step.deps.clock() - state["started_at"] - state.get("waited_s", 0.0) - step.waited
    return settings.run_seconds - spent


def _chat(step: _Step, persona: str, messages: list[dict[str, str]], *, stream: bool = False,
          until: Any = None, answering: bool = False, **kwargs: Any) -> Any:
    """One model call for this step: streamed to the run page when asked, cut at graph.step_seconds
    (counted from the first token, so waiting for the model and reading the prompt do not count), and
    stopped early once `until(text so far)` is true. A call also ends when the run's time budget does
    (counted from the call's start); ALFRED's answer (`answering`) still gets its step limit after the
    budget ran out, then counted from the call's start too, so the run ends within one step of it."""
    deps = step.deps
    sink = deps.token_sink(persona, step.node) if stream else None
    limit = float(deps.settings.step_seconds)
    from_start, reason = False, "time"
    left = _run_seconds_left(step)
    if left is not None and not answering and (not limit or left < limit):
        limit, from_start, reason = max(left, 1.0), True, "budget"
    elif left is not None and answering and left <= 0 and limit:
        from_start = True
    pieces: list[str] = []
    first: list[float] = []
    started = time.perf_counter()

    def on_token(piece: str) -> None:
        pieces.append(piece)
        if sink:
            sink(piece)
        now = time.perf_counter()
        if not first:
            first.append(started if from_start else now)
        if limit and now - first[0] > limit:
            raise StepCut(reason)
        if until and "\n" in piece and until("".join(pieces)):
            raise StepCut("complete")

    try:
        result = deps.model.chat(persona, messages, on_token=on_token, **{**deps.chat_options, **kwargs})
    except StepCut as cut:
        result = _Partial("".join(pieces), started=started, reason=cut.reason)
    step.spend(result)
    return result


class _Unparsed:
    """Stands in for a structured reply that was not valid JSON (e.g. cut off at max_tokens)."""

    def __init__(self, error: Exception) -> None:
        self.content = getattr(error, "content", "")
        self.parsed = None
        self.error = str(error)
        self.prompt_tokens = int(getattr(error, "prompt_tokens", 0) or 0)
        self.completion_tokens = int(getattr(error, "completion_tokens", 0) or 0)
        self.total_ms = 0.0


def _chat_json(step: _Step, persona: str, messages: list[dict[str, str]], **kwargs: Any) -> Any:
    """A structured contribution; junk or cut-off JSON degrades to the node's fallback, not a failed run."""
    try:
        return _chat(step, persona, messages, **kwargs)
    except ModelOutputInvalid as exc:
        unparsed = _Unparsed(exc)
        step.spend(unparsed)
        return unparsed


def _fallback_note(result: Any) -> dict[str, Any]:
    return {"unparsed": result.error} if isinstance(result, (_Unparsed, _Partial)) else {}


def _prompt_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m.get("content", "") for m in messages)


def budget_out(state: GraphState, settings: GraphSettings, clock: Any = time.time) -> str:
    """Which of the run's budgets ran out ("" while both last)."""
    if settings.run_tokens and state.get("tokens_used", 0) >= settings.run_tokens:
        return f"the token budget ({settings.run_tokens} tokens) ran out"
    started = state.get("started_at")
    if settings.run_seconds and started:
        if clock() - started - state.get("waited_s", 0.0) >= settings.run_seconds:
            return f"the time budget ({settings.run_seconds} s) ran out"
    return ""


def alfred_route(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """ALFRED receives the task and decides whether BABS researches memory first."""
    step = _Step(state, "alfred_route", deps)
    started = state.get("started_at") or deps.clock()
    found = deps.memory_search(state["task"], deps.settings.memory_k) if deps.settings.research_relevance else None
    close = _close_memory(found or [], deps)
    if close is not None:
        # Memory holds something close to the task: BABS looks, whatever a small model would guess.
        label = (close.get("source") or {}).get("label") or "an earlier run"
        reason = f"Memory holds something close to this task: {label} (similarity {float(close['relevance']):.2f})."
        step.state = {**state, "started_at": started}
        step.record(persona="ALFRED", kind="route", content="BABS researches first. " + reason,
                    data={"research": True, "by": "memory", "relevance": close["relevance"]})
        return step.update(research=True, route_reason=reason, started_at=started, route_found=found)
    result = _chat_json(step, "ALFRED", prompts.route(_persona(deps, "ALFRED"), state),
                        json_schema=prompts.ROUTE_SCHEMA, max_tokens=deps.settings.json_max_tokens)
    verdict = result.parsed if isinstance(result.parsed, dict) else {}
    research = bool(verdict.get("research", True))
    reason = str(verdict.get("reason", "")).strip() or "No reason given."
    step.state = {**state, "started_at": started}
    step.record(persona="ALFRED", kind="route", content=("BABS researches first. " if research else
                "Straight to analysis. ") + reason, data={"research": research, **_fallback_note(result)},
                result=result)
    return step.update(research=research, route_reason=reason, started_at=started,
                       **({"route_found": found} if found is not None else {}))


def _close_memory(found: list[dict[str, Any]], deps: GraphDeps) -> dict[str, Any] | None:
    """The memory most similar to the task when it reaches graph.research_relevance (the route's search
    of embeddings and the full-text index: no model call), else None."""
    best = max(found, key=lambda m: float(m.get("relevance", 0.0)), default=None)
    if best is None or float(best.get("relevance", 0.0)) < deps.settings.research_relevance:
        return None
    return best


def babs_research(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """BABS searches memory and reports what is relevant (plainly saying so when nothing is). Only
    memories at least graph.memory_min_relevance similar to the task are used; the step lists them."""
    step = _Step(state, "babs_research", deps)
    threshold = deps.settings.memory_min_relevance
    # The route searched memory for this task already; BABS reads what it found.
    found = state.get("route_found")
    if found is None:
        found = deps.memory_search(state["task"], deps.settings.memory_k)
    memories = [m for m in found if float(m.get("relevance", 1.0)) >= threshold]
    if not memories:
        # A knowledge gap: ALFRED asked for research and memory holds nothing relevant. With web research
        # on, BABS searches, keeps the pages in memory and looks again.
        web = deps.web_research(state["task"])
        if web.get("enabled"):
            step.record(persona="BABS", kind="web", content=_web_note(web), data=web)
            if web.get("fetched"):
                found = deps.memory_search(state["task"], deps.settings.memory_k)
                memories = [m for m in found if float(m.get("relevance", 1.0)) >= threshold]
    ignored = len(found) - len(memories)
    if not memories:
        report = "Memory holds nothing relevant to this task yet."
        if ignored:
            report = f"Memory holds nothing relevant enough to this task ({ignored} weaker match(es) left out)."
        step.record(persona="BABS", kind="research", content=report, data={"memories": [], "ignored": ignored})
        return step.update(memories=[], babs_report=report)
    messages = prompts.research(_persona(deps, "BABS"), state["task"], memories)
    result = _chat(step, "BABS", messages, stream=True, max_tokens=deps.settings.max_tokens)
    report = result.content.strip()
    # Reporting what a memory says is the job: only the instructions count as an echo.
    instructions = _instructions_of(_prompt_text(messages), {**state, "memories": memories})
    # A report of a word or two ("2") says nothing a person or BRICK can use: the sources stand instead.
    if quality.hollow_reason(report, prompt=instructions) or len(quality.words(report)) < 4:
        listing = "; ".join(f"[{i + 1}] {_clip(m.get('text', ''), 160)}" for i, m in enumerate(memories))
        report = f"Memories that may bear on this task: {listing}"
        step.fallback("research")
    step.record(persona="BABS", kind="research", content=report,
                data={"memories": memories, "ignored": ignored, "fallback": bool(step.fallbacks),
                      "sources": citations.source_entries(memories)}, result=result)
    return step.update(memories=memories, babs_report=report)


def _web_note(web: dict[str, Any]) -> str:
    """What BABS's web search did, in a line for the transcript."""
    if web.get("error"):
        return f"BABS searched the web for this task: {web['error']}."
    fetched, refused = web.get("fetched") or [], web.get("refused") or []
    parts = [f"BABS searched the web ({web.get('provider', 'search')}): {len(fetched)} page(s) kept in memory"]
    parts += [f"{f.get('title') or f['url']} <{f['url']}>" for f in fetched]
    parts += [f"refused {r['url']}: {r.get('reason', '')}" for r in refused]
    return "; ".join(parts) + "."


def alfred_first(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """ALFRED answers the task himself before the team works on it (graph.first_answer): the answer one
    call of his model gives, with the sources BABS found. The synthesis keeps it unless the team shows
    it wrong, so the team's work revises a real answer and does not replace one the model had right."""
    step = _Step(state, "alfred_first", deps)
    result = _chat(step, "ALFRED", prompts.first_answer(state), stream=True, max_tokens=deps.settings.max_tokens)
    answer = result.content.strip()
    hollow = quality.hollow_reason(answer, prompt="", task=state["task"]) or quality.assent_only(answer)
    notes = []
    if isinstance(result, _Partial) and result.reason != "complete":
        notes.append("cut at the step limit" if result.reason == "time" else "cut when the run's time budget ran out")
    if hollow:
        notes.append(f"no first answer ({hollow}): the team starts from the task alone")
        answer = ""
    shown = (answer or "ALFRED gave no first answer.") + ("\n— " + "; ".join(notes) if notes else "")
    step.record(persona="ALFRED", kind="first_answer", content=shown,
                data={"notes": notes, "fallback": False} if notes else {}, result=result)
    return step.update(first_answer=answer)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def brick_candidates(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """BRICK proposes k distinct candidate lines of thought (Tree-of-Thoughts breadth). Copies of the task,
    echoes of the instructions and near-duplicates are dropped and BRICK is asked once more; then the run
    continues with the real lines and says so."""
    step = _Step(state, "brick_candidates", deps)
    k = deps.settings.thoughts
    kept: list[str] = []
    dropped: list[str] = []
    result: Any = None
    asks = [prompts.candidates(_persona(deps, "BRICK"), state, k, _size(deps, "BRICK")),
            prompts.candidates_retry(_persona(deps, "BRICK"), state, k)]
    notes: list[str] = []
    instructions = ""
    for attempt, messages in enumerate(asks):
        result = _chat_json(step, "BRICK", messages, json_schema=prompts.thoughts_schema(k),
                            max_tokens=deps.settings.json_max_tokens)
        raw = result.parsed.get("thoughts", []) if isinstance(result.parsed, dict) else []
        if isinstance(result, _Unparsed):
            notes.append("the reply was cut off or unreadable" if attempt == 0 else "the second reply was unreadable")
        instructions += "\n" + _prompt_text(messages).replace(state["task"], " ")
        kept, newly_dropped = quality.distinct_lines([*kept, *[str(t) for t in raw]], task=state["task"],
                                                     instructions=instructions, embed=deps.model.embed)
        dropped += newly_dropped
        kept = kept[:k]
        if len(kept) >= min(2, k):
            break
        if attempt == 0:
            notes.append(f"{len(kept)} real line(s) of {k}: asked again")
    if len(kept) < min(2, k):
        step.fallback("candidates")
        notes.append(f"continuing with {len(kept)} real line(s)" if kept else
                     "no real line of thought: BRICK answers the task directly")
    body = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(kept)) or "(none)"
    content = body + ("\n— " + "; ".join(notes) if notes else "")
    step.record(persona="BRICK", kind="thoughts", content=content,
                data={"thoughts": kept, "dropped": dropped, "notes": notes, "fallback": bool(step.fallbacks),
                      **_fallback_note(result)}, result=result)
    return step.update(candidates=kept)


def robin_evaluate(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """ROBIN scores each real candidate; the best one becomes BRICK's thesis."""
    step = _Step(state, "robin_evaluate", deps)
    thoughts = state.get("candidates", [])
    if len(thoughts) <= 1:
        content = ("Only one real line of thought: nothing to choose." if thoughts else
                   "No line of thought to score: BRICK answers the task directly.")
        step.record(persona="ROBIN", kind="evaluation", content=content,
                    data={"scores": [10.0] if thoughts else [], "best": 0})
        return step.update(candidate_scores=[10.0] if thoughts else [], best_candidate=0)
    result = _chat_json(step, "ROBIN", prompts.evaluate(_persona(deps, "ROBIN"), state, thoughts),
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
    return step.update(candidate_scores=scores, best_candidate=best)


def _has_tool_line(text: str) -> bool:
    """A complete TOOL_REQUIRED line: BRICK has asked; the rest would only repeat the request."""
    for match in _TOOL_RE.finditer(text):
        if not quality.template_copy(match.group(1)) and "\n" in text[match.start():].lstrip("\n"):
            return True
    return False


def _chosen_candidate(state: GraphState) -> str:
    cands = state.get("candidates") or []
    return cands[min(max(state.get("best_candidate", 0), 0), len(cands) - 1)] if cands else ""


def brick_thesis(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """BRICK states (or revises) the thesis, with the live tool registry bound to the call. A hollow thesis
    (empty, an echo of the prompt, the task copied back) is asked for again with a shorter prompt; then
    the chosen line of thought stands in, recorded as a fallback."""
    step = _Step(state, "brick_thesis", deps)
    tools = deps.tools()
    messages = prompts.thesis(_persona(deps, "BRICK"), state, _size(deps, "BRICK"))
    kwargs: dict[str, Any] = {"max_tokens": deps.settings.max_tokens}
    if tools:
        kwargs["tools"] = tools
    result = _chat(step, "BRICK", messages, stream=True, until=_has_tool_line, **kwargs)
    tool_results = list(state.get("tool_results", []))
    if result.tool_calls and deps.call_tool:
        for call in result.tool_calls:
            output = deps.call_tool(call["name"], call.get("arguments", {}))
            tool_results.append({"spec": call["name"], "arguments": call.get("arguments", {}), "output": output})
            step.record(persona="BRICK", kind="tool_call", content=f"{call['name']}({call.get('arguments', {})})",
                        data={"output": output})
        messages = prompts.thesis(_persona(deps, "BRICK"), {**state, "tool_results": tool_results},
                                  _size(deps, "BRICK"))
        result = _chat(step, "BRICK", messages, stream=True, max_tokens=deps.settings.max_tokens)
    text, spec = parse_tool_request(result.content)
    can_forge = state.get("tool_requests", 0) < deps.settings.max_tool_requests
    if spec and not can_forge:
        spec = ""
    notes: list[str] = []
    if isinstance(result, _Partial) and result.reason == "time":
        notes.append(f"cut at the step limit ({deps.settings.step_seconds} s)")
    elif isinstance(result, _Partial) and result.reason == "budget":
        notes.append("cut when the run's time budget ran out")
    # A revision may keep sentences of the previous thesis, and any thesis may state a retrieved fact:
    # only the instructions count as an echo.
    own_prompt = _instructions_of(_prompt_text(messages), state)
    hollow = quality.hollow_reason(text, prompt=own_prompt, task=state["task"]) or quality.assent_only(text)
    if hollow and spec:
        # BRICK asked for a tool before giving a thesis: the forge (or its refusal) comes first.
        step.record(persona="BRICK", kind="thesis", content="BRICK asks for a tool before giving a thesis.",
                    data={"tool_spec": spec}, result=result)
        return step.update(tool_spec=spec, tool_results=tool_results)
    if hollow:
        notes.append(f"the first thesis was hollow ({hollow}): asked again, shorter")
        retry = prompts.thesis_retry(_persona(deps, "BRICK"), state)
        result = _chat(step, "BRICK", retry, stream=True, max_tokens=deps.settings.max_tokens)
        text, _ = parse_tool_request(result.content)
        own_prompt += "\n" + _instructions_of(_prompt_text(retry), state)
        hollow = quality.hollow_reason(text, prompt=own_prompt, task=state["task"]) or quality.assent_only(text)
    fallback = False
    if hollow:
        fallback = True
        step.fallback("thesis")
        chosen = _chosen_candidate(state)
        previous = state.get("thesis", "")
        text = previous or chosen
        notes.append(f"the second thesis was hollow too ({hollow}): " +
                     ("the previous thesis stands" if previous else
                      "the chosen line of thought stands in" if chosen else "no thesis"))
    data: dict[str, Any] = {"tool_spec": spec} if spec else {}
    if notes:
        data["notes"] = notes
    data["fallback"] = fallback
    shown = text or "BRICK gave no thesis."
    if notes:
        shown += "\n— " + "; ".join(notes)
    step.record(persona="BRICK", kind="thesis", content=shown, data=data, result=result)
    dialogue = list(state.get("dialogue", []))
    if text and not fallback:
        dialogue.append({"persona": "BRICK", "content": text})
    return step.update(thesis=text, dialogue=dialogue, tool_spec=spec, tool_results=tool_results)


def _similar_tool(spec: str, deps: GraphDeps) -> dict[str, Any] | None:
    """A registered tool whose name or description already fits the request, if any."""
    schemas = deps.tools()
    if not schemas:
        return None
    described = [f"{t.get('function', t).get('name', '')}: {t.get('function', t).get('description', '')}"
                 for t in schemas]
    spec_words = set(quality.words(spec))
    for schema in schemas:
        name = schema.get("function", schema).get("name", "")
        if name and (name in spec or set(name.split("_")) <= spec_words):
            return schema.get("function", schema)
    vectors = deps.model.embed([spec, *described])
    best = max(range(len(schemas)), key=lambda i: cosine_similarity(vectors[0], vectors[i + 1]))
    if cosine_similarity(vectors[0], vectors[best + 1]) >= TOOL_MATCH:
        return schemas[best].get("function", schemas[best])
    return None


TOOL_MATCH = 0.8  # embedding similarity at which a registered tool is offered instead of forging another


def tool_forge(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """BRICK's tool request passes the spec gate (a pure, testable function that does not restate the
    task), then the registry is searched for a tool that already fits; only then does the forge build one.
    A rejected or already-met request goes back to BRICK with the reason."""
    step = _Step(state, "tool_forge", deps)
    spec = state.get("tool_spec", "")
    problem = quality.tool_spec_problem(spec, state["task"])
    asked = {" ".join(quality.words(r.get("spec", ""))) for r in state.get("tool_results", [])}
    if not problem and " ".join(quality.words(spec)) in asked:
        problem = "it was already requested in this run, with the outcome above"
    existing = None if problem else _similar_tool(spec, deps)
    if problem:
        note = (f"Tool request rejected: {problem}. Describe one pure function with its inputs, what it "
                "returns and an example call with its result — or answer without a tool.")
        outcome: dict[str, Any] = {"status": "rejected", "note": note}
        kind = "tool_rejected"
    elif existing:
        note = f"The tool {existing.get('name')} already exists and is bound to your call: use it instead."
        outcome = {"status": "existing", "note": note, "tool": existing.get("name")}
        kind = "tool_request"
    else:
        # The forge takes minutes on a small model: say so on the run page while it works.
        sink = deps.token_sink("BRICK", step.node)
        if sink:
            sink(f"The Tool Forge is building a tool for: {spec}\n(BRICK writes it; the sandbox checks it. "
                 "The request's own page on the Forge shows each attempt.)")
        spent, seconds = step.budget(), _run_seconds_left(step)
        tokens_left = max(0, spent["tokens_max"] - spent["tokens"]) if spent["tokens_max"] else None
        outcome = deps.forge(spec, tokens_left=tokens_left,
                             seconds_left=None if seconds is None else max(0.0, seconds)) or {}
        step.tokens += int(outcome.get("tokens") or 0)  # the forge's writing is the run's too
        note = outcome.get("note") or outcome.get("status", "")
        kind = "tool_request"
    step.record(persona="BRICK", kind=kind, content=f"TOOL_REQUIRED: {spec}\n→ {note}",
                data={"spec": spec, **outcome})
    results = [*state.get("tool_results", []), {"spec": spec, **outcome, "note": note}]
    return step.update(tool_spec="", tool_requests=state.get("tool_requests", 0) + 1, tool_results=results,
                       thesis=state.get("thesis", "") if state.get("turn") else "")


def robin_respond(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """ROBIN answers the thesis with an antithesis and/or a synthesis; an echo of the instructions or an
    empty answer is asked for again once, then recorded as missing (the critic is then skipped)."""
    step = _Step(state, "robin_respond", deps)
    messages = prompts.respond(_persona(deps, "ROBIN"), state, _size(deps, "ROBIN"))
    result = _chat(step, "ROBIN", messages, stream=True, max_tokens=deps.settings.max_tokens)
    text = result.content.strip()
    notes = []
    # Agreeing with BRICK in BRICK's words is an answer; only the instructions count as an echo.
    seen = _instructions_of(_prompt_text(messages), state)
    hollow = quality.hollow_reason(text, prompt=seen, task=state["task"])
    if hollow:
        notes.append(f"the first answer was hollow ({hollow}): asked again, shorter")
        retry = prompts.respond_retry(_persona(deps, "ROBIN"), state)
        result = _chat(step, "ROBIN", retry, stream=True, max_tokens=deps.settings.max_tokens)
        text = result.content.strip()
        seen += "\n" + _instructions_of(_prompt_text(retry), state)
        hollow = quality.hollow_reason(text, prompt=seen, task=state["task"])
    if hollow:
        step.fallback("antithesis")
        notes.append(f"the second answer was hollow too ({hollow}): ROBIN's answer is left out")
        text = ""
    dialogue = list(state.get("dialogue", []))
    if text:
        dialogue.append({"persona": "ROBIN", "content": text})
    shown = (text or "ROBIN gave no real answer.") + ("\n— " + "; ".join(notes) if notes else "")
    step.record(persona="ROBIN", kind="antithesis", content=shown,
                data={"notes": notes, "fallback": not text} if notes else {}, result=result)
    return step.update(antithesis=text, dialogue=dialogue)


def alfred_critic(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """Measure the BRICK↔ROBIN disagreement: embedding distance blended with ALFRED's verdict. When the
    critic or ROBIN says they agree, the score says so too; only real disagreement raises an event
    (once per run)."""
    step = _Step(state, "alfred_critic", deps)
    vectors = deps.model.embed([state["thesis"], state["antithesis"]])
    distance = cosine_distance(vectors[0], vectors[1])
    result = _chat_json(step, "ALFRED", prompts.critic(_persona(deps, "ALFRED"), state),
                        json_schema=prompts.CRITIC_SCHEMA, max_tokens=deps.settings.json_max_tokens)
    verdict = result.parsed if isinstance(result.parsed, dict) else {}
    # Without a readable verdict the embedding distance alone measures the disagreement.
    judged = _clamp01(verdict.get("dissonance"), default=distance)
    score = round(0.5 * distance + 0.5 * judged, 3)
    reason = str(verdict.get("reason", "")).strip()
    agree = quality.critic_says_agree(reason, verdict.get("consensus"), state["antithesis"])
    adjusted = ""
    if agree and score >= deps.settings.consensus_threshold:
        adjusted = f"lowered from {score:.2f}: the critic says they agree"
        score = round(max(0.0, deps.settings.consensus_threshold - 0.05), 3)
    consensus = agree and score < deps.settings.consensus_threshold
    turn = state.get("turn", 0) + 1
    detail = {"embedding_distance": round(distance, 3), "critic": judged, "consensus": consensus, "turn": turn,
              "reason": reason, **({"adjusted": adjusted} if adjusted else {}), **_fallback_note(result)}
    step.record(persona="ALFRED", kind="dissonance",
                content=f"Dissonance {score:.2f} — {reason or 'no reason given'}"
                + (f" ({adjusted})" if adjusted else ""),
                data=detail, result=result, dissonance=score)
    update = step.update(dissonance=[*state.get("dissonance", []), score], consensus=consensus, turn=turn)
    real_disagreement = not agree and score > deps.settings.dissonance_threshold
    if real_disagreement and not state.get("dissonance_reported"):
        update["dissonance_reported"] = True
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
    result = _chat_json(step, "ALFRED", messages, json_schema=prompts.AMENDMENT_SCHEMA,
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
    return step.update(amendment_id=amendment_id or 0, paused_at=deps.clock())


def await_decision(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """Pause the run until a person approves or rejects the amendment in the admin. The time spent
    waiting for the person does not count against the run's time budget."""
    decision = interrupt({"amendment": state["amendment_id"]})
    step = _Step(state, "await_decision", deps)
    status = decision.get("status", "?") if isinstance(decision, dict) else str(decision)
    comment = decision.get("comment", "") if isinstance(decision, dict) else ""
    paused = max(0.0, deps.clock() - state.get("paused_at", deps.clock()))
    started = state.get("started_at", deps.clock()) + paused
    step.state = {**state, "started_at": started}
    step.record(persona="ALFRED", kind="decision",
                content=f"Amendment #{state['amendment_id']} {status}" + (f": {comment}" if comment else "."),
                data=decision if isinstance(decision, dict) else {"status": status})
    return step.update(amendment_decision=decision if isinstance(decision, dict) else {}, started_at=started)


def _team_notes(state: GraphState) -> str:
    """What the team produced that is real, for an answer written from what exists."""
    lines = [f"{t['persona']}: {t['content']}" for t in state.get("dialogue", [])]
    if not lines and state.get("candidates"):
        lines = [f"BRICK's line of thought: {c}" for c in state["candidates"]]
    for result in state.get("tool_results", []):
        if result.get("output") is not None:
            lines.append(f"Tool {result.get('spec', '')}: {result.get('output')}")
    return "\n".join(lines)


def _instructions_of(prompt: str, state: GraphState) -> str:
    """The prompt without what the team found or said — facts from memory, tool results, BABS's report,
    earlier contributions — which a contribution may rightly repeat: only the instructions are left
    for the echo check (a retrieved fact stated back is the answer, not an echo)."""
    found = [_team_notes(state), *(t.get("content", "") for t in state.get("dialogue", [])),
             state.get("first_answer", ""), state.get("thesis", ""), state.get("antithesis", ""),
             state.get("babs_report", ""),
             *(state.get("candidates") or []), *(str(m.get("text", "")) for m in state.get("memories") or []),
             prompts.sources_block(state), prompts.key_lines_block(state)]
    for result in state.get("tool_results", []):
        found += [str(result.get("output", "")), str(result.get("note", "")), str(result.get("spec", ""))]
    for text in sorted((t for t in found if t and t.strip()), key=len, reverse=True):
        prompt = prompt.replace(text, " ")
    return prompt


def alfred_synthesis(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """ALFRED writes the final answer from the whole discussion (from what exists when a budget ran
    out, saying so). A hollow answer is asked for once more; then BRICK's last real thesis stands in,
    recorded as a fallback, and such an answer does not enter memory."""
    step = _Step(state, "alfred_synthesis", deps)
    out_of_budget = budget_out(state, deps.settings, deps.clock)
    if out_of_budget:
        step.record(persona="ALFRED", kind="budget",
                    content=f"Budget: {out_of_budget}. ALFRED answers from what the team has so far.",
                    data={"budget_out": out_of_budget})
    persona = _persona(deps, "ALFRED")
    messages = prompts.synthesis(persona, state, _size(deps, "ALFRED"))
    result = _chat(step, "ALFRED", messages, stream=True, answering=True, max_tokens=deps.settings.max_tokens)
    answer = result.content.strip()
    notes = []
    if isinstance(result, _Partial) and result.reason == "time":
        notes.append(f"cut at the step limit ({deps.settings.step_seconds} s)")
    # The answer may take the team's words; only the instructions (and the task copied back) are hollow.
    seen = _instructions_of(_prompt_text(messages), state)
    hollow = quality.hollow_reason(answer, prompt=seen, task=state["task"]) or quality.assent_only(answer)
    if hollow and out_of_budget:
        notes.append(f"the answer was hollow ({hollow}) and the budget is spent: not asked again")
    elif hollow:
        notes.append(f"the first answer was hollow ({hollow}): asked again, shorter")
        retry = prompts.synthesis_retry(persona, state, _team_notes(state))
        result = _chat(step, "ALFRED", retry, stream=True, answering=True, max_tokens=deps.settings.max_tokens)
        answer = result.content.strip()
        seen += "\n" + _instructions_of(_prompt_text(retry), state)
        hollow = quality.hollow_reason(answer, prompt=seen, task=state["task"]) or quality.assent_only(answer)
    fallback = bool(hollow)
    if fallback:
        step.fallback("answer")
        thesis = state.get("thesis", "") if "thesis" not in (state.get("fallbacks") or []) else ""
        first = state.get("first_answer", "")
        answer = first or thesis or "The team could not produce a real answer to this task."
        notes.append(f"the second answer was hollow too ({hollow}): " +
                     ("ALFRED's first answer stands" if first else
                      "BRICK's last thesis stands as the answer" if thesis else "no answer"))
    answer = _tidy_answer(answer, notes)
    grounded = _grounded(step, state, answer, persona, out_of_budget) if not fallback else None
    if grounded is not None:
        answer, said = grounded
        notes.append(said)
    cites = citations.check(answer, state["task"], list(state.get("memories") or []))
    answer = cites.pop("answer")
    step.record(persona="ALFRED", kind="answer", content=answer,
                data={"fallback": fallback, "notes": notes, "budget_out": out_of_budget, **cites}, result=result)
    return step.update(final_answer=answer, answer_fallback=fallback, budget_out=out_of_budget)


def _tidy_answer(answer: str, notes: list[str]) -> str:
    """The final answer without what a small model copies around it from its prompts: a prompt block
    after it, a teammate's "BRICK:" label or a "The final answer … is:" before it, a TOOL_REQUIRED line
    (a request is for the forge, not for the person). Each removal is noted."""
    answer, copied = quality.cut_prompt_blocks(answer, prompts.BLOCK_HEADERS)
    if copied:
        notes.append(f"the answer went on to copy its prompt's “{copied}” block: that copy was cut")
    answer, speaker = quality.strip_speaker(answer)
    if speaker:
        notes.append(f"the answer began with “{speaker}:”, copied from the discussion: the label was dropped")
    answer, preamble = quality.strip_preamble(answer)
    if preamble:
        notes.append(f"the answer began with “{preamble}”: dropped")
    without, _ = parse_tool_request(answer)
    if without != answer and quality.words(without):
        answer = without
        notes.append("the answer held a TOOL_REQUIRED line: it was dropped")
    return answer


def _grounded(step: _Step, state: GraphState, answer: str, persona: dict[str, Any] | None, out_of_budget: str
              ) -> tuple[str, str] | None:
    """When the most relevant source is close to the task (graph.research_relevance) and holds a line that
    speaks to it, but the team's answer uses nothing of that line, ALFRED answers once more from the
    sources and that line alone (unless the run's budget is spent, as for a hollow answer); the new answer
    stands only if it uses the line. When that source is a document or a web page, an answer that still
    uses nothing of it gets the line quoted under it, cited, so the person sees what the source says (a
    past run's line is the team's own earlier words, not evidence: it is not quoted). (answer, note), or
    None when there was nothing to check."""
    memories = state.get("memories") or []
    deps = step.deps
    if not memories or float(memories[0].get("relevance", 1.0)) < deps.settings.research_relevance:
        return None
    best = prompts.key_lines(state)
    lines = "\n".join(best)
    if not best or citations.uses(answer, lines, state["task"]) is not False:
        return None
    unused = "the answer used nothing of the source's line that speaks to the task"
    evidence = (memories[0].get("source") or {}).get("kind") in ("document", "web")
    # Whole sentences, each once (two lines of one sentence are quoted as that sentence).
    said = list(dict.fromkeys(citations.whole_sentence(line, str(memories[0].get("text", ""))) for line in best))
    quoted = f"{answer}\n\nWhat the source says [1]: \"{' … '.join(said)}\"" if evidence else answer
    if out_of_budget:
        return quoted, f"{unused}; the budget is spent: not asked again" + (
            ", the line is quoted under the answer" if evidence else "")
    result = _chat(step, "ALFRED", prompts.grounded_answer(persona, state, prompts.key_lines_block(state)),
                   stream=True, answering=True,
                   max_tokens=deps.settings.max_tokens)
    again = result.content.strip()
    if citations.uses(again, lines, state["task"]) and not quality.assent_only(again):
        return again, f"{unused}: answered again from it"
    return quoted, (f"{unused}; answered again from it, that answer did not use it either: the first stands"
                    + (", with the line quoted under it" if evidence else ""))


def memory_write(state: GraphState, deps: GraphDeps) -> dict[str, Any]:
    """Store the run in memory (summary + dialogue chunks) so later runs can retrieve it — only when its
    answer is a real one (not a fallback or placeholder)."""
    step = _Step(state, "memory_write", deps)
    if state.get("answer_fallback"):
        step.record(persona="BABS", kind="memory",
                    content="Not stored in memory: the answer is a fallback, not the team's own.",
                    data={"stored": False})
        return step.update()
    stored = deps.memory_write(dict(state))
    if stored:
        step.record(persona="BABS", kind="memory", content=stored.get("note", "Stored in memory."), data=stored)
    else:
        step.record(persona="BABS", kind="memory", content="Memory is not available: nothing was stored.")
    return step.update()


def route_after_alfred(state: GraphState, *, analysis: str = "brick_candidates") -> str:
    return "babs_research" if state.get("research") else analysis


def route_after_evaluate(state: GraphState, *, settings: GraphSettings, clock: Any = time.time) -> str:
    return "alfred_synthesis" if budget_out(state, settings, clock) else "brick_thesis"


def route_after_thesis(state: GraphState, *, settings: GraphSettings, clock: Any = time.time) -> str:
    if budget_out(state, settings, clock):
        return "alfred_synthesis"
    if state.get("tool_spec") and state.get("tool_requests", 0) < settings.max_tool_requests:
        return "tool_forge"
    if not state.get("thesis"):
        return "alfred_synthesis"  # nothing for ROBIN to answer: ALFRED answers from what exists
    return "robin_respond"


def route_after_respond(state: GraphState) -> str:
    return "alfred_critic" if state.get("antithesis") else "alfred_synthesis"


def route_after_critic(state: GraphState, *, settings: GraphSettings, clock: Any = time.time) -> str:
    if state.get("amend_evidence") and "amendment_id" not in state:
        return "alfred_amend"
    if state.get("consensus") or state.get("turn", 0) >= settings.max_turns or budget_out(state, settings, clock):
        return "alfred_synthesis"
    return "brick_thesis"


def route_after_amend(state: GraphState, *, settings: GraphSettings, wait: bool, clock: Any = time.time) -> str:
    if state.get("amendment_id") and wait:
        return "await_decision"
    return route_after_critic(state, settings=settings, clock=clock)
