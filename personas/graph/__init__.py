"""The cognitive graph: ALFRED, BABS, BRICK and ROBIN reasoning through a LangGraph state graph."""
from personas.graph.graph import build_graph
from personas.graph.state import GraphDeps, GraphSettings, GraphState

__all__ = ["GraphDeps", "GraphSettings", "GraphState", "build_graph"]
