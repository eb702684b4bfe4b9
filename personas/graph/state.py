"""State carried between the graph's nodes, and what the nodes need from the outside world."""
from __future__ import annotations

import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, TypedDict


class GraphState(TypedDict, total=False):
    """Everything a run knows; every node returns the keys it changes."""

    run_id: int
    task: str
    source: str  # "architect" (a person) or "motivator" (the system's own goal)
    step: int  # node executions so far; names each step so a resumed node updates it
    research: bool  # ALFRED's routing decision: should BABS search memory first?
    route_reason: str
    route_found: list[dict[str, Any]]  # what the route's memory search found (BABS reuses it)
    memories: list[dict[str, Any]]  # what BABS retrieved
    babs_report: str
    candidates: list[str]  # BRICK's Tree-of-Thoughts candidate lines
    candidate_scores: list[float]  # ROBIN's evaluation of each candidate
    best_candidate: int
    thesis: str  # BRICK's current thesis
    antithesis: str  # ROBIN's latest answer to it
    dialogue: list[dict[str, str]]  # BRICK/ROBIN turns, oldest first
    turn: int  # completed BRICK↔ROBIN exchanges
    dissonance: list[float]  # one score per exchange, 0 (agreement) .. 1 (opposition)
    consensus: bool
    tool_spec: str  # set when BRICK asks for a tool
    tool_requests: int
    tool_results: list[dict[str, Any]]
    first_answer: str  # ALFRED's own answer before the team's work ("" when graph.first_answer is off)
    final_answer: str
    amendment_considered: bool  # persistent dissonance is checked once per run
    amend_evidence: list[int]  # runs showing persistent dissonance on related tasks
    amendment_id: int  # ALFRED's draft (0 when none was recorded)
    amendment_decision: dict[str, Any]  # the person's decision, once the run resumes
    # Budgets: each node adds what it spent (tokens generated, seconds spent waiting for the model lock).
    started_at: float  # wall-clock start of the run (time.time()), moved on by time spent paused for a person
    paused_at: float  # set when the run pauses for a person's decision
    tokens_used: Annotated[int, operator.add]
    waited_s: Annotated[float, operator.add]
    budget_out: str  # which budget ran out ("" while they last)
    # Hollow contributions replaced by a recorded fallback; such a run's answer does not enter memory.
    fallbacks: Annotated[list[str], operator.add]
    answer_fallback: bool
    dissonance_reported: bool  # the high-dissonance event is raised once per run at most


class ChatModel(Protocol):
    """The slice of ModelManager the graph uses."""

    def chat(self, persona_or_model: str, messages: list[dict[str, Any]], **kwargs: Any) -> Any: ...

    def embed(self, texts: list[str]) -> Any: ...


PROMPT_STYLES = ("auto", "small", "large")


@dataclass(frozen=True)
class GraphSettings:
    """Knobs from settings.toml [graph]."""

    thoughts: int = 3  # k candidate thoughts for Tree-of-Thoughts
    max_turns: int = 3  # BRICK↔ROBIN exchanges at most
    dissonance_threshold: float = 0.6  # above: a high_cognitive_dissonance event
    consensus_threshold: float = 0.35  # below (with an agreeing critic): stop early
    max_tool_requests: int = 2
    max_tokens: int = 384  # per free-text contribution
    json_max_tokens: int = 256  # per structured (JSON) contribution
    memory_k: int = 5
    memory_min_relevance: float = 0.35  # BABS uses a memory only when its similarity to the task is at least this
    # A memory this similar to the task sends BABS to research without asking ALFRED's model (0 = always ask).
    research_relevance: float = 0.5
    run_tokens: int = 3000  # generated tokens per run; then ALFRED answers from what exists (0 = no limit)
    run_seconds: int = 240  # wall-clock seconds per run, not counting waits for the model or a person (0 = none)
    step_seconds: int = 75  # generation seconds per contribution; a longer one is cut and kept as it is (0 = none)
    prompt_style: str = "auto"  # small | large | auto (by the size of the model each persona speaks with)
    # ALFRED answers the task himself before the team works on it, and the synthesis keeps that answer
    # unless what the team found shows it wrong. Off: on the embedded lineup it recovered the answers a
    # single call gets right but lost more of the team's own (README, Benchmarks).
    first_answer: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GraphSettings:
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"[graph] has unknown key(s): {', '.join(sorted(unknown))}")
        for name, value in data.items():
            wanted = type(getattr(cls, name))
            if wanted is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"graph.{name} must be true or false, not {value!r}")
                continue
            ok = isinstance(value, (int, float)) if wanted is float else isinstance(value, wanted)
            if not ok or isinstance(value, bool):
                raise ValueError(f"graph.{name} must be {'a string' if wanted is str else 'a number'}, not {value!r}")
        values = cls(**data)
        if values.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"graph.prompt_style must be one of {', '.join(PROMPT_STYLES)}, "
                             f"not {values.prompt_style!r}")
        if not 1 <= values.thoughts <= 8:
            raise ValueError("graph.thoughts must be between 1 and 8")
        if not 1 <= values.max_turns <= 10:
            raise ValueError("graph.max_turns must be between 1 and 10")
        for name in ("run_tokens", "run_seconds", "step_seconds"):
            if getattr(values, name) < 0:
                raise ValueError(f"graph.{name} must be 0 (no limit) or more")
        for name in ("dissonance_threshold", "consensus_threshold", "memory_min_relevance", "research_relevance"):
            if not 0.0 <= getattr(values, name) <= 1.0:
                raise ValueError(f"graph.{name} must be between 0 and 1")
        return values


def _no_memory(query: str, k: int) -> list[dict[str, Any]]:
    return []


def _no_forge(spec: str, **budget: Any) -> dict[str, Any]:
    return {"status": "recorded", "note": "The Tool Forge is not available: the request was recorded."}


@dataclass
class GraphDeps:
    """The outside world as the nodes see it: models, the step recorder, memory and the forge.

    `record_step(key=, node=, persona=, kind=, content=, data=, result=, dissonance=, duration_ms=)`
    persists one contribution; `token_sink(persona, node)` returns an on_token callback (or None);
    `check_cancelled()` raises when the run was cancelled.
    """

    model: ChatModel
    record_step: Callable[..., None]
    settings: GraphSettings = field(default_factory=GraphSettings)
    token_sink: Callable[[str, str], Callable[[str], None] | None] = lambda persona, node: None
    memory_search: Callable[[str, int], list[dict[str, Any]]] = _no_memory
    memory_write: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda state: None
    # BABS searches the web when memory holds nothing relevant (off unless the settings turn it on):
    # {"enabled": bool, "fetched": [...], "refused": [...], "error": str}.
    web_research: Callable[[str], dict[str, Any]] = lambda query: {"enabled": False}
    # forge(spec, tokens_left=, seconds_left=): the run's budget left bounds the forge's attempts after the
    # first; the outcome's "tokens" count against the run's budget.
    forge: Callable[..., dict[str, Any]] = _no_forge
    tools: Callable[[], list[dict[str, Any]]] = lambda: []
    call_tool: Callable[[str, dict[str, Any]], Any] | None = None
    check_cancelled: Callable[[], None] = lambda: None
    personas: Callable[[], dict[str, Any]] = lambda: {}
    on_dissonance: Callable[[float, dict[str, Any]], None] = lambda score, detail: None
    # Persistent dissonance → a codex amendment that only a person can approve.
    amendment_evidence: Callable[[], list[int]] = lambda: []
    propose_amendment: Callable[..., int | None] = lambda **draft: None
    rejected_amendments: Callable[[], list[dict[str, str]]] = lambda: []
    wait_for_decision: bool = True
    clock: Callable[[], float] = time.time
    chat_options: dict[str, Any] = field(default_factory=dict)  # added to every model call (a run's temperature)
    # (backend, model name) a persona speaks with: picks its prompts' size when graph.prompt_style is auto.
    model_of: Callable[[str], tuple[str, str]] = lambda persona: ("", "")
