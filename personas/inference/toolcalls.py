"""Tool specs in, tool calls out: normalising specs and recovering calls from model text."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

_DECODER = json.JSONDecoder()
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


def normalize_tools(tools: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Accept `{"type": "function", "function": {...}}` or a bare `{name, description, parameters}`."""
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, Mapping):
            raise ValueError(f"tools[{i}]: expected a mapping, got {tool!r}")
        fn = tool.get("function", tool) if tool.get("type", "function") == "function" else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ValueError(f"tools[{i}]: a function spec needs a non-empty 'name'")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, Mapping):
            raise ValueError(f"tools[{i}] ({fn['name']}): 'parameters' must be a JSON schema object")
        out.append(
            {
                "type": "function",
                "function": {
                    "name": fn["name"],
                    "description": str(fn.get("description", "")),
                    "parameters": dict(params),
                },
            }
        )
    return out


def coerce_arguments(raw: Any) -> dict[str, Any]:
    """Tool arguments as a dict whether the model gave an object or a JSON string of one."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return {"_raw": raw}
        return dict(value) if isinstance(value, Mapping) else {"_raw": raw}
    if raw is None:
        return {}
    return {"_raw": raw}


def _as_call(obj: Any, names: set[str] | None) -> dict[str, Any] | None:
    if not isinstance(obj, Mapping):
        return None
    # Some templates wrap the call: {"tool_call": {...}} or {"function": {...}}.
    for wrapper in ("tool_call", "function"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping) and "name" in inner:
            obj = inner
            break
    name = obj.get("name")
    if not isinstance(name, str) or (names is not None and name not in names):
        return None
    if "arguments" in obj:
        args = obj["arguments"]
    elif "parameters" in obj:
        args = obj["parameters"]
    else:
        return None
    return {"name": name, "arguments": coerce_arguments(args)}


def _json_objects(text: str) -> Iterable[tuple[int, int, Any]]:
    """Every top-level JSON value that starts with `{` or `[` in text, with its span."""
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = _DECODER.raw_decode(text, i)
            except json.JSONDecodeError:
                i += 1
                continue
            yield i, end, value
            i = end
        else:
            i += 1


def parse_tool_calls(text: str, tool_names: Iterable[str] | None = None) -> tuple[list[dict[str, Any]], str]:
    """Recover tool calls from model text; return (calls, text with the calls removed).

    Tolerates `<tool_call>` tags (closed or not), code fences, bare JSON objects, a list of calls,
    and prose before or after. Only names in `tool_names` count, so ordinary JSON in an answer is
    not mistaken for a call.
    """
    names = set(tool_names) if tool_names is not None else None
    calls: list[dict[str, Any]] = []
    spans: list[tuple[int, int]] = []

    def take(segment_start: int, segment: str, *, record: bool) -> bool:
        found_any = False
        for start, end, value in _json_objects(segment):
            found = [_as_call(c, names) for c in (value if isinstance(value, list) else [value])]
            found = [c for c in found if c]
            if found:
                found_any = True
                calls.extend(found)  # type: ignore[arg-type]
                if record:
                    spans.append((segment_start + start, segment_start + end))
        return found_any

    # A wrapper (tag or fence) that held a call is removed whole, so no stray markup is left.
    tagged = list(_TAGGED.finditer(text))
    for m in tagged:
        if take(m.start(1), m.group(1), record=False):
            spans.append((m.start(), m.end()))
    if not tagged:
        for m in _FENCE.finditer(text):
            if take(m.start(1), m.group(1), record=False):
                spans.append((m.start(), m.end()))
        if not calls:
            take(0, text, record=True)

    remaining = text
    for start, end in sorted(spans, key=lambda s: s[0], reverse=True):
        remaining = remaining[:start] + remaining[end:]
    # Keep prose, drop leftover tags from partially matched spans.
    remaining = re.sub(r"</?tool_call>", "", remaining).strip()
    return calls, remaining


def calls_from_openai(tool_calls: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Convert OpenAI/llama.cpp/Ollama style tool_calls to [{name, arguments}]."""
    out: list[dict[str, Any]] = []
    for call in tool_calls or []:
        fn = call.get("function", call) if isinstance(call, Mapping) else getattr(call, "function", None)
        if fn is None:
            continue
        name = fn.get("name") if isinstance(fn, Mapping) else getattr(fn, "name", None)
        args = fn.get("arguments") if isinstance(fn, Mapping) else getattr(fn, "arguments", None)
        if name:
            out.append({"name": name, "arguments": coerce_arguments(args)})
    return out


def calls_to_openai(calls: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Our [{name, arguments}] back to the OpenAI message shape, for replaying a conversation."""
    return [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})},
        }
        for i, c in enumerate(calls)
    ]
