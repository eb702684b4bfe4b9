"""The compiled graph's diagram (Mermaid source), for the run page."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def graph_mermaid() -> str:
    from personas.graph import GraphDeps, build_graph

    graph = build_graph(GraphDeps(model=None, record_step=lambda **_: None))  # shape only; never run
    return graph.get_graph().draw_mermaid()
