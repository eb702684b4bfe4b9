"""The live tool registry: enabled tools as function schemas, reloaded when a tool changes, called in the sandbox."""
from __future__ import annotations

import ast
import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Max

from forge import sandbox
from forge.config import forge_settings
from forge.models import Tool, ToolCall
from forge.toolforge import CALL_HARNESS, parse_result_line
from personas.models import Run

log = logging.getLogger(__name__)

_SIMPLE_TYPES = {
    "int": {"type": "integer"}, "float": {"type": "number"}, "complex": {"type": "string"},
    "str": {"type": "string"}, "bool": {"type": "boolean"}, "None": {"type": "null"},
    "list": {"type": "array"}, "List": {"type": "array"}, "tuple": {"type": "array"}, "Tuple": {"type": "array"},
    "set": {"type": "array"}, "Set": {"type": "array"}, "frozenset": {"type": "array"}, "Sequence": {"type": "array"},
    "Iterable": {"type": "array"}, "dict": {"type": "object"}, "Dict": {"type": "object"},
    "Mapping": {"type": "object"}, "Any": {}, "object": {}, "Decimal": {"type": "string"},
    "Fraction": {"type": "string"}, "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
}
_PARAM_LINE = re.compile(r"^\s*[*]{0,2}(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.+)$")


def _annotation_schema(node: ast.expr | None) -> dict[str, Any]:
    """A JSON schema for a type hint read from the source (the code is never imported here)."""
    if node is None:
        return {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        try:
            return _annotation_schema(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return {}
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | Y
        return _union([_annotation_schema(node.left), _annotation_schema(node.right)])
    if isinstance(node, ast.Name):
        return dict(_SIMPLE_TYPES.get(node.id, {}))
    if isinstance(node, ast.Attribute):
        return dict(_SIMPLE_TYPES.get(node.attr, {}))
    if isinstance(node, ast.Subscript):
        base = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Optional":
            return _union([_annotation_schema(args[0]), {"type": "null"}])
        if base == "Union":
            return _union([_annotation_schema(a) for a in args])
        if base == "Literal":
            values = [a.value for a in args if isinstance(a, ast.Constant)]
            return {"enum": values}
        schema = dict(_SIMPLE_TYPES.get(base, {}))
        if schema.get("type") == "array" and args:
            if base in ("tuple", "Tuple") and len(args) > 1 and not (isinstance(args[-1], ast.Constant)
                                                                    and args[-1].value is Ellipsis):
                schema["prefixItems"] = [_annotation_schema(a) for a in args]
            else:
                item = _annotation_schema(args[0])
                if item:
                    schema["items"] = item
        if schema.get("type") == "object" and len(args) == 2:
            value = _annotation_schema(args[1])
            if value:
                schema["additionalProperties"] = value
        return schema
    return {}


def _union(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    if any(not s for s in schemas):
        return {}
    types = [s.get("type") for s in schemas]
    if all(isinstance(t, str) for t in types) and all(set(s) == {"type"} for s in schemas):
        return {"type": list(dict.fromkeys(types))}
    return {"anyOf": schemas}


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from Google/NumPy/reST-ish docstrings."""
    lines = doc.strip().splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section = "summary"
    for line in lines:
        stripped = line.strip()
        lowered = stripped.lower().rstrip(":")
        if lowered in ("args", "arguments", "parameters", "params"):
            section = "params"
            continue
        if lowered in ("returns", "return", "raises", "yields", "examples", "example", "notes"):
            section = "other"
            continue
        if set(stripped) <= {"-"} and stripped:
            continue  # NumPy underline
        rest = re.match(r"^:param\s+(?:\w+\s+)?(\w+)\s*:\s*(.+)$", stripped)
        if rest:
            params[rest.group(1)] = rest.group(2).strip()
            continue
        if section == "summary":
            if not stripped and summary:
                section = "other"
            elif stripped:
                summary.append(stripped)
        elif section == "params":
            match = _PARAM_LINE.match(line)
            if match:
                params[match.group(1)] = match.group(3).strip()
    return " ".join(summary), params


def _literal(node: ast.expr) -> Any:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    json.dumps(value)  # only JSON-safe defaults are shown
    return value


def schema_from_source(code: str, name: str | None = None) -> dict[str, Any]:
    """The OpenAI-style function schema of the (named, else the only public) function in `code`,
    from its signature, type hints, defaults and docstring. Reads the source; runs nothing."""
    tree = ast.parse(code)
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and (n.name == name if name else
                                                                          not n.name.startswith("_"))]
    if not funcs:
        raise ValueError(f"no function {name or '(public)'} in the code")
    fn = funcs[0]
    description, param_docs = _docstring_parts(ast.get_docstring(fn) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(positional, defaults), *zip(args.kwonlyargs, args.kw_defaults)]
    for arg, default in pairs:
        prop = _annotation_schema(arg.annotation)
        if arg.arg in param_docs:
            prop["description"] = param_docs[arg.arg]
        if default is None:
            required.append(arg.arg)
        else:
            try:
                prop["default"] = _literal(default)
            except (TypeError, ValueError):
                pass
        properties[arg.arg] = prop
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if args.kwarg is None:
        parameters["additionalProperties"] = False
    returns = _annotation_schema(fn.returns)
    if returns.get("type") and isinstance(returns["type"], str):
        description = f"{description} Returns {returns['type']}.".strip()
    return {"type": "function", "function": {"name": fn.name, "description": description or fn.name,
                                             "parameters": parameters}}


def signature_text(code: str, name: str) -> str:
    """`name(a: int, b: int) -> int`, as written in the source."""
    tree = ast.parse(code)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            return f"{name}({ast.unparse(node.args)}){returns}"
    return f"{name}(…)"


def ignores_input(code: str, name: str) -> bool:
    """Whether the function `name` never reads any of its parameters: whatever it is given, it returns
    the same (a restated text or a constant). Such a tool helps no task."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if fn is None:
        return False
    params = {a.arg for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs,
                              *(x for x in (fn.args.vararg, fn.args.kwarg) if x)]}
    used = {n.id for stmt in fn.body for n in ast.walk(stmt) if isinstance(n, ast.Name)}
    return bool(params) and not params & used


def standings(tools: dict[str, LoadedTool]) -> dict[str, str]:
    """The enabled tools BRICK is not offered, with why: one that takes no input or ignores it only
    restates text; one never called by a model in `[forge] idle_after_runs` finished runs since it was
    (re)offered sits idle. A new version, or "Offer again" on its page, gives a tool a fresh start."""
    out = {name: tool.unfit for name, tool in tools.items() if tool.unfit}
    idle_after = forge_settings().idle_after_runs
    if not idle_after:
        return out
    rows = Tool.objects.filter(name__in=[n for n in tools if n not in out]).select_related("current_version")
    for row in rows:
        since = max(filter(None, [row.offered_since, row.current_version.created if row.current_version else None]))
        runs = Run.objects.filter(status=Run.Status.DONE, finished__gte=since).exclude(source=Run.Source.EVAL)
        if runs.count() < idle_after:
            continue
        called = ToolCall.objects.filter(tool_version__tool=row, run__isnull=False, created__gte=since).exists()
        if not called:
            out[row.name] = f"never called in the {idle_after}+ runs since {since:%Y-%m-%d %H:%M}"
    return out


# --------------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class LoadedTool:
    """An enabled tool's current version, as this process knows it."""

    name: str
    version_id: int
    number: int
    code: str
    schema: dict[str, Any]
    unfit: str = ""  # why the tool cannot help a task whatever it is given ("" when it can); see unfit_reason


def unfit_reason(code: str, name: str, schema: dict[str, Any]) -> str:
    """A tool that takes no input or ignores it only restates text (read once, when a version loads)."""
    if not schema.get("function", {}).get("parameters", {}).get("properties"):
        return "takes no input: it only restates a fixed text"
    if ignores_input(code, name):
        return "ignores its input: it returns the same whatever it is given"
    return ""


@dataclass
class CallOutcome:
    """What a sandboxed tool call returned."""

    ok: bool
    result: Any = None
    error: str = ""
    duration_s: float = 0.0
    backend: str = ""
    version_id: int | None = None


class ToolRegistry:
    """Per-process cache of the enabled tools. Every read compares a cheap database stamp (count and
    latest change of the tools) and reloads when another process forged, disabled or rolled back a tool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._tools: dict[str, LoadedTool] = {}

    def _current_stamp(self) -> tuple:
        agg = Tool.objects.aggregate(n=Count("id"), last=Max("updated"))
        return agg["n"], agg["last"]

    def _load(self) -> dict[str, LoadedTool]:
        tools: dict[str, LoadedTool] = {}
        for tool in Tool.objects.filter(enabled=True).exclude(current_version=None).select_related("current_version"):
            version = tool.current_version
            version.tool = tool
            code = _materialise(version)
            tools[tool.name] = LoadedTool(tool.name, version.pk, version.number, code, version.schema,
                                          unfit_reason(version.code, tool.name, version.schema))
        return tools

    def refresh(self, *, force: bool = False) -> dict[str, LoadedTool]:
        stamp = self._current_stamp()
        with self._lock:
            if force or stamp != self._stamp:
                self._tools = self._load()
                self._stamp = stamp
                log.info("tool registry loaded: %s", ", ".join(sorted(self._tools)) or "(empty)")
            return dict(self._tools)

    def tools(self) -> dict[str, LoadedTool]:
        return self.refresh()

    def schemas(self) -> list[dict[str, Any]]:
        """The tools BRICK is offered, as OpenAI-style function schemas, by name: every enabled tool that
        has earned its place (see `standings`). The others stay listed and removable on the Forge page."""
        tools = self.refresh()
        left_out = standings(tools)
        return [t.schema for name, t in sorted(tools.items()) if name not in left_out]

    def get(self, name: str) -> LoadedTool | None:
        return self.refresh().get(name)

    def call(self, name: str, arguments: dict[str, Any], *, backend: str, limits: sandbox.Limits) -> CallOutcome:
        """Run the tool's current version in the sandbox with `arguments` (JSON in, JSON out)."""
        tool = self.get(name)
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return CallOutcome(False, error=f"no enabled tool named {name!r} (enabled: {known})")
        problem = check_arguments(tool.schema, arguments)
        if problem:
            return CallOutcome(False, error=problem, version_id=tool.version_id)
        try:
            payload = json.dumps({"name": name, "arguments": arguments})
        except (TypeError, ValueError) as exc:
            return CallOutcome(False, error=f"arguments are not JSON: {exc}", version_id=tool.version_id)
        try:
            ran = sandbox.run(CALL_HARNESS, files={"tool.py": tool.code}, stdin=payload, backend=backend,
                              limits=limits)
        except sandbox.SandboxError as exc:
            return CallOutcome(False, error=f"the sandbox could not run the tool: {exc}", version_id=tool.version_id)
        reply = parse_result_line(ran.stdout)
        if reply is None:
            why = f"killed: {ran.killed_reason}" if ran.killed_reason else f"exit code {ran.exit_code}"
            tail = ran.stderr.strip().splitlines()[-1:] or [""]
            return CallOutcome(False, error=f"the tool gave no result ({why}) {tail[0]}".strip(),
                               duration_s=ran.duration_s, backend=ran.backend, version_id=tool.version_id)
        if not reply.get("ok"):
            return CallOutcome(False, error=str(reply.get("error", "failed")), duration_s=ran.duration_s,
                               backend=ran.backend, version_id=tool.version_id)
        return CallOutcome(True, result=reply.get("result"), duration_s=ran.duration_s, backend=ran.backend,
                           version_id=tool.version_id)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,), "number": (int, float), "string": (str,), "boolean": (bool,), "array": (list,),
    "object": (dict,), "null": (type(None),),
}
_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
               "array": "a list", "object": "an object", "null": "null"}


def _fits(schema: dict[str, Any], value: Any) -> bool:
    """Whether a JSON value fits a parameter schema's type (and its items' type, one level down)."""
    if "anyOf" in schema:
        return any(_fits(option, value) for option in schema["anyOf"])
    kinds = schema.get("type")
    if kinds is None:
        return True  # no annotation: anything goes
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    for kind in kinds:
        expected = _JSON_TYPES.get(kind)
        if expected is None:
            return True
        if isinstance(value, bool) and kind in ("integer", "number"):
            continue  # JSON true is not a number
        if isinstance(value, expected):
            items = schema.get("items")
            if kind == "array" and isinstance(items, dict):
                return all(_fits(items, v) for v in value)
            return True
    return False


def _type_words(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type_words(s) for s in schema["anyOf"])
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    words = " or ".join(_TYPE_WORDS.get(k, k) for k in kinds)
    items = schema.get("items")
    if kinds == ["array"] and isinstance(items, dict) and items.get("type"):
        words += f" of {_type_words(items).removeprefix('an ').removeprefix('a ')}s"
    return words


def check_arguments(schema: dict[str, Any], arguments: Any) -> str:
    """A clear message when arguments do not fit the schema: names, and the types the signature declares
    (checked before the sandbox runs, so `add("2", "3")` is refused instead of returning "23")."""
    if not isinstance(arguments, dict):
        return f"arguments must be a JSON object, got {type(arguments).__name__}"
    params = schema.get("function", {}).get("parameters", {})
    props = params.get("properties", {})
    missing = [p for p in params.get("required", []) if p not in arguments]
    unknown = [a for a in arguments if a not in props] if params.get("additionalProperties") is False else []
    parts = []
    if missing:
        parts.append(f"missing argument(s): {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown argument(s): {', '.join(unknown)} (expected: {', '.join(props) or 'none'})")
    for name, value in arguments.items():
        spec = props.get(name)
        if isinstance(spec, dict) and not _fits(spec, value):
            parts.append(f"argument {name} must be {_type_words(spec)}, got {json.dumps(value)[:60]}")
    return "; ".join(parts)


def _materialise(version: Any) -> str:
    """The version's file under var/tools/; written from the database when this host lacks it."""
    path = version.path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    if text != version.code:
        # The database holds the tested code; a missing or hand-edited file is put back.
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(version.code, encoding="utf-8")
        tmp.replace(path)
    return version.code


_registry: ToolRegistry | None = None
_registry_lock = threading.Lock()


def registry() -> ToolRegistry:
    """This process's registry (created on first use; loads lazily)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = ToolRegistry()
        return _registry
