"""Wires the nodes into the compiled LangGraph graph."""
from __future__ import annotations

from functools import partial
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from personas.graph import nodes
from personas.graph.state import GraphDeps, GraphState

NODES = (
    "alfred_route", "babs_research", "brick_candidates", "robin_evaluate", "brick_thesis", "tool_forge",
    "robin_respond", "alfred_critic", "alfred_amend", "await_decision", "alfred_synthesis", "memory_write",
)


def build_graph(
    deps: GraphDeps, *, checkpointer: Any = None
) -> CompiledStateGraph[GraphState, None, GraphState, GraphState]:
    """ALFRED routes → (BABS researches) → (ALFRED's own first answer) → BRICK's candidates → ROBIN
    evaluates → BRICK's thesis ⇄ (forge) → ROBIN answers → ALFRED measures dissonance (→ on persistent
    dissonance ALFRED drafts a codex amendment and the run waits for a person's decision) → repeat or
    ALFRED synthesises → memory.
    When a budget runs out, or a contribution ALFRED needs is missing, the run goes to the synthesis."""
    graph = StateGraph(GraphState)
    settings, clock = deps.settings, deps.clock
    # ALFRED's first answer is a node only when graph.first_answer is on (off by default).
    names: tuple[str, ...] = NODES
    if settings.first_answer:
        after = NODES.index("babs_research") + 1
        names = (*NODES[:after], "alfred_first", *NODES[after:])
    for name in names:
        graph.add_node(name, partial(getattr(nodes, name), deps=deps))
    analysis = "alfred_first" if settings.first_answer else "brick_candidates"
    graph.add_edge(START, "alfred_route")
    graph.add_conditional_edges("alfred_route", partial(nodes.route_after_alfred, analysis=analysis),
                                ["babs_research", analysis])
    graph.add_edge("babs_research", analysis)
    if settings.first_answer:
        graph.add_edge("alfred_first", "brick_candidates")
    graph.add_edge("brick_candidates", "robin_evaluate")
    graph.add_conditional_edges("robin_evaluate", partial(nodes.route_after_evaluate, settings=settings, clock=clock),
                                ["brick_thesis", "alfred_synthesis"])
    graph.add_conditional_edges(
        "brick_thesis", partial(nodes.route_after_thesis, settings=settings, clock=clock),
        ["tool_forge", "robin_respond", "alfred_synthesis"],
    )
    graph.add_edge("tool_forge", "brick_thesis")
    graph.add_conditional_edges("robin_respond", nodes.route_after_respond, ["alfred_critic", "alfred_synthesis"])
    after_turn = ["alfred_synthesis", "brick_thesis"]
    graph.add_conditional_edges(
        "alfred_critic", partial(nodes.route_after_critic, settings=settings, clock=clock),
        ["alfred_amend", *after_turn],
    )
    graph.add_conditional_edges(
        "alfred_amend",
        partial(nodes.route_after_amend, settings=settings, wait=deps.wait_for_decision, clock=clock),
        ["await_decision", *after_turn],
    )
    graph.add_conditional_edges(
        "await_decision", partial(nodes.route_after_critic, settings=settings, clock=clock), after_turn
    )
    graph.add_edge("alfred_synthesis", "memory_write")
    graph.add_edge("memory_write", END)
    return graph.compile(checkpointer=checkpointer)
