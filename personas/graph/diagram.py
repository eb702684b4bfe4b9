"""The compiled graph's diagram: Mermaid source, and an SVG drawn here for the run page."""
from __future__ import annotations

from functools import lru_cache
from html import escape
from typing import Any

from langchain_core.runnables.graph import Graph

from personas.graph import GraphDeps, build_graph

BOX_W, BOX_H, GAP_Y, LEFT = 190, 34, 22, 40
PERSONA_COLOURS = {"alfred": "#845ef7", "brick": "#e8590c", "robin": "#2b8a3e", "babs": "#1c7ed6"}


class _NoModel:
    """Stands in for the models: the diagram's graph is built for its shape only and never run."""

    def chat(self, persona_or_model: str, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        raise RuntimeError("the diagram's graph is never run")

    def embed(self, texts: list[str]) -> Any:
        raise RuntimeError("the diagram's graph is never run")


def _compiled() -> Graph:
    return build_graph(GraphDeps(model=_NoModel(), record_step=lambda **_: None)).get_graph()  # shape only


@lru_cache(maxsize=1)
def graph_mermaid() -> str:
    return _compiled().draw_mermaid()


@lru_cache(maxsize=1)
def graph_svg() -> str:
    """Nodes top to bottom in their order; forward edges on the left, loops back on the right.

    Solid arrows always follow, dashed ones are routing decisions."""
    graph = _compiled()
    names = list(graph.nodes)
    row = {name: i for i, name in enumerate(names)}
    y = {name: 10 + i * (BOX_H + GAP_Y) for i, name in enumerate(names)}
    width, height = LEFT + BOX_W + 220, 20 + len(names) * (BOX_H + GAP_Y)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="The cognitive graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#495057"/></marker></defs>']
    back = 0
    for edge in graph.edges:
        a, b = edge.source, edge.target
        dash = ' stroke-dasharray="5 4"' if edge.conditional else ""
        x_mid = LEFT + BOX_W / 2
        if row[b] == row[a] + 1:
            parts.append(f'<line x1="{x_mid}" y1="{y[a] + BOX_H}" x2="{x_mid}" y2="{y[b]}" stroke="#495057"'
                         f'{dash} marker-end="url(#arrow)"/>')
            continue
        side = LEFT + BOX_W if row[b] < row[a] else LEFT
        bulge = 30 + 24 * back if row[b] < row[a] else -(12 + 10 * (back % 3))
        back += 1
        y1, y2 = y[a] + BOX_H / 2, y[b] + BOX_H / 2
        parts.append(f'<path d="M{side},{y1} C{side + bulge},{y1} {side + bulge},{y2} {side},{y2}" fill="none" '
                     f'stroke="#868e96"{dash} marker-end="url(#arrow)"/>')
    for name in names:
        persona = name.split("_")[0]
        colour = PERSONA_COLOURS.get(persona, "#adb5bd")
        label = {"__start__": "task in", "__end__": "done"}.get(name, name)
        parts.append(f'<rect data-node="{escape(name)}" x="{LEFT}" y="{y[name]}" width="{BOX_W}" height="{BOX_H}" '
                     f'rx="8" fill="#fff" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{LEFT + BOX_W / 2}" y="{y[name] + BOX_H / 2 + 5}" text-anchor="middle" '
                     f'font-family="system-ui, sans-serif" font-size="13" fill="#1d2330">{escape(label)}</text>')
    # A node lights up once the run page's path (#visited-nodes) names it, live as steps arrive.
    rules = "".join(f'.graph-card:has(.visited-mark[data-node="{escape(n)}"]) rect[data-node="{escape(n)}"]'
                    '{fill:#fff3bf;stroke-width:3}' for n in names)
    parts.append(f"<style>{rules}</style></svg>")
    return "".join(parts)
