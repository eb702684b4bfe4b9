"""What the kernel asks of the apps above it: memory, the forge, the live tools, promoted adapters and
the evals runner.

The kernel (models, events, inference, the graph and its run executor) never imports forge/ or
memory/. Those apps plug their functions in here from their AppConfig.ready(); until they do (or in a
project without them) each port answers as if the capability were absent: no memories, no tools, no
forge, no adapter.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any


def _no_memories(query: str, k: int) -> list[dict[str, Any]]:
    return []


def _no_memory_write(*, run_id: int, state: dict[str, Any]) -> dict[str, Any] | None:
    return None


def _no_web(*, query: str, run_id: int | None) -> dict[str, Any]:
    return {"enabled": False}


def _no_forge(*, run_id: int | None, spec: str, **budget: Any) -> dict[str, Any]:
    return {"status": "failed", "tool": "", "note": "No tool forge is installed: reason it out without the tool."}


def _no_tools() -> list[dict[str, Any]]:
    return []


def _no_tool_call(*, run_id: int | None, name: str, arguments: Any) -> Any:
    return {"error": f"there is no enabled tool named {name!r} (available: none)"}


def _no_adapter(persona: str) -> dict[str, Any] | None:
    return None


def _nothing_waits() -> list[dict[str, Any]]:
    return []


def _no_evals(**_: Any) -> dict[str, Any] | None:
    return None


def _no_senses() -> dict[str, Any] | None:
    return None


def _no_library(documents: Any) -> Callable[[str, int], list[dict[str, Any]]] | None:
    return None


@dataclass
class Ports:
    """The functions behind each port (see the module docstring)."""

    memory_search: Callable[[str, int], list[dict[str, Any]]] = _no_memories
    """What BABS retrieves for a query: hierarchical search results as dicts."""
    memory_write: Callable[..., dict[str, Any] | None] = _no_memory_write
    """Store a finished run (run_id=, state=); returns what was stored, or None."""
    web_research: Callable[..., dict[str, Any]] = _no_web
    """BABS found a knowledge gap (query=, run_id=): search the web and keep the pages in memory."""
    forge: Callable[..., dict[str, Any]] = _no_forge
    """BRICK asked for a tool (run_id=, spec=): build it now and say how it went."""
    tool_schemas: Callable[[], list[dict[str, Any]]] = _no_tools
    """The live tool registry as function schemas."""
    call_tool: Callable[..., Any] = _no_tool_call
    """A model called a tool (run_id=, name=, arguments=): its result, or {"error": ...}."""
    model_override: Callable[[str], dict[str, Any] | None] = _no_adapter
    """The promoted fine-tune a persona answers with, or None for its configured model."""
    waiting_for_a_person: Callable[[], list[dict[str, Any]]] = _nothing_waits
    """What an app has waiting for a person's decision: [{"label", "count", "url"}] (count > 0 only)."""
    senses: Callable[[], dict[str, Any] | None] = _no_senses
    """What BABS can reach beyond runs, for the Models page: {"documents", "chunks", "documents_url",
    "web": {"enabled", "provider", "error", "recent": [{"url", "status", "reason", "fetched_at"}]}}, or None."""
    document_library: Callable[[Any], Callable[[str, int], list[dict[str, Any]]] | None] = _no_library
    """A search over given documents ((name, text) pairs) kept outside the person's memory, or None."""
    task_accuracy: Callable[..., dict[str, Any] | None] = _no_evals
    """A persona with given weights (persona=, adapter=, limit=, on_item=) on a fixed subset of the evals
    `tasks` suite: {"n", "passed", "rows"}, or None where no evals runner is installed."""


_ports = Ports()
_NAMES = {f.name for f in fields(Ports)}


def provide(**functions: Callable[..., Any]) -> None:
    """Plug functions into ports by name (called from an AppConfig.ready())."""
    unknown = set(functions) - _NAMES
    if unknown:
        raise TypeError(f"no such port: {', '.join(sorted(unknown))}")
    for name, function in functions.items():
        setattr(_ports, name, function)


def ports() -> Ports:
    """The ports as plugged in now."""
    return _ports
