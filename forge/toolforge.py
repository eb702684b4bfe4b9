"""The Tool Forge loop: BRICK writes a function; the request's own examples (authoritative) and BRICK's
separate test cases (advice) judge it in the sandbox; candidates are cross-checked; the best is kept."""
from __future__ import annotations

import ast
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from forge import sandbox
from forge.config import ForgeSettings

# The forge's system prompt starts with this line; scripted test models recognise a forge request by it.
FORGE_SYSTEM_MARK = "You write Python tools for the A4PS tool registry."
FORGE_SYSTEM = f"""{FORGE_SYSTEM_MARK}
You are BRICK: precise and careful."""
# The test-case request starts with this line (scripted test models tell the two requests apart by it).
FORGE_TESTS_MARK = "You write test cases for a Python tool of the A4PS tool registry."

TOOL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESULT_MARK = "A4PS-RESULT "
# Builtins that reach outside the function's arguments; the sandbox would stop them, but a tool
# that needs them is not the kind of tool the registry holds.
FORBIDDEN_NAMES = frozenset({
    "eval", "exec", "compile", "open", "__import__", "input", "breakpoint", "globals", "locals", "vars",
    "setattr", "delattr", "memoryview", "exit", "quit", "help",
})
TEST_ONLY_IMPORTS = frozenset({"unittest"})
# BRICK's test cases are asked for in a second, short call: three one-line asserts fit in this budget,
# and a fourth line cut off mid-way is simply dropped.
TESTS_MAX_TOKENS = 120
TEST_CASES = 3
FRESH_TEMPERATURE = 0.8  # a fresh sample, when a repair only repeated an earlier candidate

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)

# ----------------------------------------------------------------------- code extraction/split
def extract_code(text: str) -> str:
    """The Python source in a model reply: its fenced blocks (joined until they parse), else the text."""
    blocks = [body for lang, body in _FENCE_RE.findall(text or "") if lang.lower() in ("", "python", "py", "python3")]
    if not blocks:
        return (text or "").strip()
    # Small models split the function and the tests over two blocks, or repeat the whole answer:
    # take blocks in order while they still parse together and have not repeated a definition.
    chosen = blocks[0].strip()
    names = _top_level_names(chosen)
    for block in blocks[1:]:
        more = _top_level_names(block)
        if more is None or names is None or (names & more):
            break
        candidate = f"{chosen}\n\n{block.strip()}"
        if _top_level_names(candidate) is None:
            break
        chosen, names = candidate, names | more
    return chosen


def _top_level_names(code: str) -> set[str] | None:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _is_test_node(node: ast.stmt, test_names: set[str]) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name.startswith("test")
    if isinstance(node, ast.ClassDef):
        return node.name.startswith("Test") or any(
            (isinstance(b, ast.Attribute) and b.attr == "TestCase") or (isinstance(b, ast.Name) and b.id == "TestCase")
            for b in node.bases
        )
    if isinstance(node, ast.If):  # if __name__ == "__main__": run the tests
        test = node.test
        return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in test_names or name == "main" or (isinstance(func, ast.Attribute) and
                                                     isinstance(func.value, ast.Name) and func.value.id == "unittest"):
            return True
        return False
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        return all(m.split(".")[0] in TEST_ONLY_IMPORTS | {"pytest"} for m in modules)
    return False


def split_tests(code: str) -> tuple[str, str]:
    """(the tool's code, its tests). The test block starts at the first test function or class; before
    it only test-framework imports move to the tests. Top-level calls in the test block (running the
    tests, printing "all passed") and `if __name__ == "__main__"` blocks are dropped: the harness
    runs the tests itself. Raises SyntaxError when the code does not parse."""
    tree = ast.parse(code)
    lines = code.splitlines()
    test_names = {n.name for n in tree.body
                  if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name.startswith(("test", "Test"))}
    tool_parts: list[str] = []
    test_parts: list[str] = []
    in_tests = False
    for node in tree.body:
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
        text = "\n".join(lines[start:node.end_lineno])
        is_test = _is_test_node(node, test_names)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and is_test:
            in_tests = True
        if in_tests or is_test:
            if isinstance(node, ast.If) and is_test or isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                continue
            test_parts.append(text)
        else:
            tool_parts.append(text)
    return _join(tool_parts), _join(test_parts)


def _join(parts: list[str]) -> str:
    out = ""
    for part in parts:
        gap = "\n\n\n" if part.lstrip().startswith(("def ", "class ", "@")) and out else ("\n" if out else "")
        out += gap + part
    return out.strip() + "\n" if out.strip() else ""


# -------------------------------------------------------------------------------- static checks
@dataclass
class StaticCheck:
    """The verdict on a tool's code before anything runs: errors in words BRICK can act on."""

    ok: bool
    errors: list[str]
    name: str = ""


def _imports_in(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def _check_imports(tree: ast.AST, allowed: set[str], where: str) -> list[str]:
    errors = []
    for line, module in _imports_in(tree):
        root = module.split(".")[0]
        if not root or root not in allowed:
            errors.append(f"{where} line {line}: `import {module}` is not allowed; allowed modules: "
                          f"{', '.join(sorted(allowed))}.")
    return errors


def _check_names(tree: ast.AST, where: str) -> list[str]:
    errors = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            errors.append(f"{where} line {node.lineno}: `{node.id}` is not allowed in a tool.")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr.endswith("__"):
            errors.append(f"{where} line {node.lineno}: dunder attribute `{node.attr}` is not allowed in a tool.")
    return errors


def _is_constant(node: ast.stmt) -> bool:
    """`NAME = <literal>` (or annotated): data, not code, at module level."""
    value: ast.expr | None
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
        value = node.value
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        value = node.value
    else:
        return False
    if value is None:
        return False
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def static_check(code: str, tests: str, allowed_imports: tuple[str, ...] | set[str]) -> StaticCheck:
    """Exactly one public snake_case function with a docstring, allowed imports only, no top-level
    statements besides imports, function definitions and a docstring; tests, when given, importable."""
    errors: list[str] = []
    allowed = set(allowed_imports)
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return StaticCheck(False, [f"SyntaxError in the function, line {exc.lineno}: {exc.msg}"])
    public: list[ast.FunctionDef] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.FunctionDef):
            if not node.name.startswith("_"):
                public.append(node)
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a module docstring
        if _is_constant(node):
            continue  # a table or constant the function reads, e.g. VOWELS = "aeiou"
        if isinstance(node, ast.AsyncFunctionDef):
            errors.append(f"line {node.lineno}: `async def {node.name}` is not allowed; write a plain function.")
            continue
        first = ast.get_source_segment(code, node) or type(node).__name__
        errors.append(f"line {node.lineno}: top-level statement `{first.splitlines()[0][:80]}` is not allowed; "
                      "only imports, function definitions and a docstring may be at module level.")
    if len(public) != 1:
        names = ", ".join(f.name for f in public) or "none"
        errors.append(f"exactly one public function is required, found {len(public)} ({names}); "
                      "name helpers with a leading underscore.")
    name = public[0].name if len(public) == 1 else ""
    if name:
        if not TOOL_NAME_RE.match(name):
            errors.append(f"the function name `{name}` must be snake_case (lowercase letters, digits, underscores).")
        if not ast.get_docstring(public[0]):
            errors.append(f"the function `{name}` needs a docstring saying what it does.")
        fn_args = public[0].args
        if not (fn_args.posonlyargs or fn_args.args or fn_args.kwonlyargs or fn_args.vararg):
            errors.append(f"the function `{name}` takes no input: a tool computes its result from its arguments "
                          "(a fixed text or value needs no tool).")
    errors += _check_imports(tree, allowed, "function")
    errors += _check_names(tree, "function")
    if tests.strip():
        try:
            test_tree = ast.parse(tests)
        except SyntaxError as exc:
            errors.append(f"SyntaxError in the tests, line {exc.lineno}: {exc.msg}")
        else:
            errors += _check_imports(test_tree, allowed | TEST_ONLY_IMPORTS, "tests")
    return StaticCheck(not errors, errors, name)


# Runs inside the sandbox for a tool call: arguments in on stdin, the result out as JSON. The
# tool's own prints go to stderr so they cannot forge the result line.
CALL_HARNESS = r'''
import contextlib, json, sys, traceback

def _plain(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)

request = json.loads(sys.stdin.read())
try:
    with contextlib.redirect_stdout(sys.stderr):
        import tool
        value = getattr(tool, request["name"])(**request["arguments"])
    line = json.dumps({"ok": True, "result": value}, default=_plain)
except BaseException as exc:
    line = json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc(limit=-4)})
print("A4PS-RESULT " + line)
'''


def parse_result_line(stdout: str) -> dict[str, Any] | None:
    """The harness's last `A4PS-RESULT {json}` line, or None when it never got that far."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            try:
                value = json.loads(line[len(RESULT_MARK):])
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None

# ------------------------------------------------------------------------------------------ checks
@dataclass(frozen=True)
class Check:
    """One expectation about the tool: `call` (Python source, e.g. "add(1, 2)") equals `expected`
    (a literal's source). `origin` is "spec" (the person's own example: authoritative), "words" (a result
    the request states in words, see stated_checks) or "model" (BRICK's test case: advice, outvoted when
    candidates agree against it)."""

    call: str
    expected: str
    origin: str
    said: str = ""  # origin "words": the clause of the request it comes from

    def source(self) -> str:
        return f"assert {self.call} == {self.expected}"


def _literal(source: str) -> str | None:
    """`source` normalised if it is a Python literal (number, string, list, dict, None, True...), else None."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
        ast.literal_eval(tree)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return None
    return ast.unparse(tree)


def _call_of(source: str, name: str | None) -> str | None:
    """`source` normalised if it is a call of `name` (any name when None) with literal arguments only."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError:
        return None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        return None
    if name is not None and call.func.id != name:
        return None
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        try:
            ast.literal_eval(arg)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    return ast.unparse(call)


def _balanced_call(text: str, start: int) -> int | None:
    """Index just past the parenthesis that closes the one at text[start] (strings respected)."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


_PROSE_LINK = re.compile(r"\s*(?:==|->|→|=>|returns|should return|gives|is|evaluates to|yields)\s*", re.IGNORECASE)


def _longest_literal(text: str) -> str | None:
    """The longest prefix of `text` (cut at a delimiter) that is a Python literal."""
    cuts = sorted({m.start() for m in re.finditer(r"[.;,]\s|[.;]$|\s(?:and|or|but|while)\s|\n|$", text)}, reverse=True)
    for cut in cuts:
        value = _literal(text[:cut])
        if value is not None:
            return value
    return None


_CAMEL_CALL = re.compile(r"\b([a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+)(?=\s*\()")


def snake_calls(spec: str) -> str:
    """The spec with camelCase call names in snake_case (`calculateChange(` → `calculate_change(`): tools
    are snake_case, and the spec's examples must name the function the forge asks for."""
    return _CAMEL_CALL.sub(lambda m: re.sub(r"(?<!^)([A-Z])", r"_\1", m.group(1)).lower(), spec)


def requested_name(spec: str) -> str | None:
    """The function name a spec asks for: `def name(`, else the first `snake_name(` in the text."""
    found = re.search(r"\bdef\s+([A-Za-z_]\w*)\s*\(", spec)
    if found:
        return found.group(1)
    for match in re.finditer(r"\b([a-z_][a-z0-9_]*)\(", spec):  # `words (in brackets)` is prose, not a call
        name = match.group(1)
        if name not in _NOT_TOOL_NAMES and TOOL_NAME_RE.match(name):
            return name
    return None


_NOT_TOOL_NAMES = frozenset({"e", "g", "i", "ie", "eg", "len", "print", "sum", "max", "min", "sorted", "int", "str",
                             "float", "list", "dict", "set", "tuple", "range", "abs", "round", "and", "or", "not",
                             "in", "is", "if", "for"})


def spec_checks(spec: str, name: str | None) -> list[Check]:
    """The examples a spec states, as authoritative checks: doctest lines (`>>> f(x)` then the result)
    and prose (`f(x) returns y`, `f(x) == y`, `f(x) -> y`). Anything that does not parse is ignored."""
    if not name:
        return []
    checks: list[Check] = []
    lines = spec.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith(">>>"):
            continue
        call = _call_of(stripped[3:], name)
        following = next((x.strip() for x in lines[i + 1:] if x.strip()), "")
        expected = _literal(following) if following and not following.startswith((">>>", '"""', "'''")) else None
        if call and expected is not None:
            checks.append(Check(call, expected, "spec"))
    for match in re.finditer(rf"\b{re.escape(name)}\s*\(", spec):
        if spec[:match.start()].rstrip().endswith((">>>", "def")):
            continue
        end = _balanced_call(spec, match.end() - 1)
        if end is None:
            continue
        call = _call_of(spec[match.start():end], name)
        link = _PROSE_LINK.match(spec, end)
        if not call or not link:
            continue
        expected = _longest_literal(spec[link.end():])
        if expected is not None:
            checks.append(Check(call, expected, "spec"))
    return _unique(checks)


# The request's words: a clause that states the result for one kind of input ("An empty list gives 0.",
# "0 when n is less than 2", "a negative target gives []") becomes a check, the input built from the
# request's first example with one argument changed. Only what the words say literally is checked.
_STATED_LINK = re.compile(r"\b(?:gives|returns|is|are|yields|becomes|counts as)\s+", re.IGNORECASE)
_STATED_PHRASES = (("an empty string", "''"), ("the empty string", "''"), ("an empty list", "[]"),
                   ("the empty list", "[]"), ("an empty dict", "{}"), ("zero", "0"))
_STATED_BEFORE_WHEN = re.compile(r"(?:^|\s)(-?\d+(?:\.\d+)?|None|''|\[\]|\[\[\]\]|\[''\])\s+(?:when|if|for)\s+(.*)$")
_TEXT_NOUNS = ("text", "string", "line", "sentence", "word", "name")
_LIST_NOUNS = ("list", "sequence", "grid")


def _signature(spec: str, name: str) -> list[str]:
    """The parameter names of `name` as the spec first writes its call or definition."""
    found = re.search(rf"\b{re.escape(name)}\s*\(", spec)
    end = _balanced_call(spec, found.end() - 1) if found else None
    if found is None or end is None:
        return []
    try:
        tree = ast.parse(f"def _f({spec[found.end():end - 1]}): pass")
    except (SyntaxError, ValueError):  # ValueError: a null byte, on some Python versions
        return []
    fn = tree.body[0]
    return [a.arg for a in fn.args.args] if isinstance(fn, ast.FunctionDef) else []


_DOCSTRING = re.compile(r"(\"\"\"|''')(.*?)(?:\1|\Z)", re.DOTALL)


def _is_stub(spec: str) -> bool:
    """A request written as the function's def line and docstring, not in prose."""
    return spec.lstrip().startswith("def ")


def _docstring(spec: str) -> str:
    found = _DOCSTRING.search(spec)
    return found.group(2) if found else ""


def _prose(spec: str) -> str:
    """The spec's prose on one line: of a stub, its docstring alone (not its body); doctest lines, their
    continuation lines and results and the def line left out."""
    if _is_stub(spec):
        spec = _docstring(spec)
    kept, skip = [], False
    for line in spec.splitlines():
        stripped = line.strip()
        if stripped.startswith(">>>") or (skip and stripped.startswith("...")):
            skip = True
            continue
        if skip and stripped:
            skip = False  # the line after a doctest call is its result
            continue
        if stripped.startswith("def "):
            continue
        kept.append(stripped)
    return re.sub(r"\s+", " ", " ".join(kept)).strip()


def _clauses(spec: str) -> list[str]:
    """The spec's prose in clauses."""
    parts = re.split(r"(?<=\.)\s+|;\s*|\(|\)|,\s+and\s+|\s+and\s+(?=(?:a|an|the)\s)", _prose(spec))
    return [p.strip(" .,") for p in parts if p and p.strip(" .,")]


def _stated_value(clause: str) -> tuple[str, str] | None:
    """(value, the condition's words) of a clause that states one result, else None."""
    before = _STATED_BEFORE_WHEN.search(clause)
    if before:
        return _literal(before.group(1)) or before.group(1), before.group(2)
    for link in _STATED_LINK.finditer(clause):
        rest = clause[link.end():]
        value = next((lit for phrase, lit in _STATED_PHRASES  # a whole phrase: not "zero-based"
                      if re.match(rf"{phrase}(?![\w-])", rest, re.IGNORECASE)), None)
        if value is None and rest[:1] in "-0123456789'\"[{N":
            value = _longest_literal(rest)
        if value is not None:
            condition = clause[:link.start()]
            when = re.search(r"\b(?:when|if)\s+(.*)$", clause[link.end():])
            return value, (when.group(1) if when else condition)
    return None


def _stated_inputs(condition: str, params: list[str], template: list[Any]) -> list[tuple[int, Any]]:
    """(argument index, value) pairs the condition's words describe; [] when they say nothing plain."""
    words = condition.lower()
    def mentioned() -> list[int]:
        return [i for i, p in enumerate(params) if re.search(rf"\b{re.escape(p.lower())}\b", words)]

    for i in mentioned():
        p = re.escape(params[i].lower())
        compare = re.search(rf"\b{p}\s*(?:(<=|<|==|=)|is (less than|at most)|of)\s*(-?\d+)\b", words)
        if compare and (i >= len(template) or isinstance(template[i], int)):
            op, bound = compare.group(1) or compare.group(2) or "=", int(compare.group(3))
            return [(i, bound - 1 if op in ("<", "less than") else bound)]
    if re.search(r"\bnegative\b", words):
        named = [i for i, p in enumerate(params) if re.search(
            rf"\b{re.escape(p.lower())} is negative\b|\bnegative {re.escape(p.lower())}\b", words)]
        ints = [i for i in named or mentioned() if i >= len(template) or
                (isinstance(template[i], int) and not isinstance(template[i], bool))]
        if not named and len(ints) > 1:
            return []  # which of them the words mean is not plain
        ints = ints or ([0] if len(params) == 1 else [])
        return [(ints[0], -1)] if ints else []
    if not re.search(r"\b(?:empty|blank)\b", words):
        return []
    candidates = mentioned()
    if not candidates:
        kinds = (str,) if any(n in words for n in _TEXT_NOUNS) else (list,) if any(n in words for n in _LIST_NOUNS) \
            else (dict,) if "dict" in words else ()
        candidates = [i for i, v in enumerate(template) if kinds and isinstance(v, kinds)][:1]
        if not candidates and len(params) == 1:
            candidates = [0]
    if not candidates:
        return []
    i = candidates[0]
    kind = type(template[i]) if i < len(template) else (
        str if any(n in words for n in _TEXT_NOUNS) else list if any(n in words for n in _LIST_NOUNS) else None)
    empties: dict[type, Any] = {str: "", list: [], dict: {}, tuple: ()}
    empty = empties.get(kind) if kind else None
    if empty is None:
        return []
    out: list[tuple[int, Any]] = [(i, empty)]
    if kind is str and "blank" in words:
        out.append((i, "   "))
    return out


# Where one rule ends and the next begins: after "." or ";" before a capital letter or "(", and after a
# full stop before a parameter's name or a digit too ("size is at least 1.", "1 takes 0 steps."); not after
# "...", "e.g.", "i.e." or "etc.", and not at a semicolon before a lower-case word (the clauses of one
# sentence stay together: split there, lst-006's greedy reply failed).
_RULE_BREAK = re.compile(r"(?<=[.;])\s+(?=[A-Z(])"
                         r"|(?<!\.\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\betc\.)(?<=\.)\s+(?=[a-z0-9])")


def request_rules(spec: str) -> list[str]:
    """The spec's prose (see _prose) in sentences, in order (see _RULE_BREAK)."""
    return [s for s in _RULE_BREAK.split(_prose(spec)) if s]


def stated_checks(spec: str, name: str | None, examples: list[Check]) -> list[Check]:
    """Checks from the request's words: each clause stating the result for empty, blank, negative or
    bounded input (see _stated_inputs), called with the first example's other arguments (a one-parameter
    function needs no example). Origin "words": as binding as the examples while some candidate meets
    them, never a reason to give up on a function that passes the examples."""
    if not name:
        return []
    params = _signature(spec, name)
    template: list[Any] = []
    if examples:
        first = ast.parse(examples[0].call, mode="eval").body
        if isinstance(first, ast.Call) and not first.keywords:
            template = [ast.literal_eval(a) for a in first.args]
    if not params or (len(params) > 1 and len(template) != len(params)):
        return []
    shown = {c.call for c in examples}
    checks = []
    for clause in _clauses(spec):
        if re.search(rf"\b{re.escape(name)}\s*\(", clause):
            continue  # an example, already a check
        stated = _stated_value(clause)
        if stated is None:
            continue
        value, condition = stated
        for index, argument in _stated_inputs(condition, params, template):
            args = list(template) if template else [None] * len(params)
            args[index] = argument
            if any(a is None for a in args):
                continue
            call = f"{name}({', '.join(repr(a) for a in args)})"
            if call not in shown:
                checks.append(Check(call, value, "words", said=clause))
    return _unique(checks)


def _unique(checks: list[Check]) -> list[Check]:
    """First check per call wins (the person's examples come first, so BRICK cannot overrule them)."""
    seen: dict[str, Check] = {}
    for check in checks:
        seen.setdefault(check.call, check)
    return list(seen.values())


def assert_checks(tests: str, name: str) -> list[Check]:
    """BRICK's test cases as checks: every `assert name(literals) == literal` (either side), read line by
    line so a reply cut short keeps every complete line."""
    checks: list[Check] = []
    for raw in tests.splitlines():
        line = raw.strip()
        if not line.startswith("assert "):
            continue
        try:
            node = ast.parse(line).body[0]
        except SyntaxError:
            continue  # an unfinished last line
        if not isinstance(node, ast.Assert) or not isinstance(node.test, ast.Compare):
            continue
        compare = node.test
        if len(compare.ops) != 1 or not isinstance(compare.ops[0], ast.Eq):
            continue
        left, right = ast.unparse(compare.left), ast.unparse(compare.comparators[0])
        for call_src, value_src in ((left, right), (right, left)):
            call, value = _call_of(call_src, name), _literal(value_src)
            if call and value is not None:
                checks.append(Check(call, value, "model"))
                break
    return _unique(checks)


# ------------------------------------------------------------------------- candidate preparation
class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self.names.get(node.name, node.name)
        self.generic_visit(node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self.names.get(node.id, node.id)
        return node


# Standard modules a small model uses without importing them; added when the name is used but unbound.
AUTO_IMPORTS = frozenset({"math", "re", "string", "itertools", "functools", "collections", "datetime", "statistics",
                          "json", "heapq", "bisect", "calendar", "fractions", "decimal", "operator", "textwrap",
                          "unicodedata"})


def _bound_names(tree: ast.Module) -> set[str]:
    """Every name the code imports ("*" for a star import), defines, assigns or takes as a parameter."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound


def _missing_imports(tree: ast.Module, allowed: set[str], bound: set[str]) -> list[str]:
    """Allowed modules the code uses by name (`re.sub`) without importing or defining (`bound`) that name."""
    used = {n.value.id for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and isinstance(n.value.ctx, ast.Load)}
    return sorted(m for m in used - bound if m in AUTO_IMPORTS and m in allowed)


TYPING_NAMES = frozenset({"Any", "Callable", "Dict", "FrozenSet", "Generator", "Iterable", "Iterator", "List",
                          "Mapping", "Optional", "Sequence", "Set", "Tuple", "Union"})


def _missing_typing(tree: ast.Module, allowed: set[str], bound: set[str]) -> list[str]:
    """typing's names (`List[int]` in a signature) used without importing or defining (`bound`) them: the
    small model's NameError at the first call."""
    if "typing" not in allowed or "*" in bound:
        return []
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return sorted((used & TYPING_NAMES) - bound)


def _is_main_guard(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"


def normalise_functions(code: str, name: str | None, *, describe: str = "",
                        allowed_imports: tuple[str, ...] | set[str] = ()) -> tuple[str, str, list[str]]:
    """(code, entry name, notes): what a small model gets wrong in form, not substance, is mended
    rather than rejected. Several public functions become one public entry point and private helpers;
    the entry takes the requested name; a missing docstring is taken from `describe` (the request);
    calls left at module level (a demo `print(f(...))`, a main guard) are dropped; an allowed module
    used without its import (`re.sub` with no `import re`) is imported, and so are typing's names a
    signature uses (`List[int]` with no `from typing import List`)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code, "", []
    notes: list[str] = []
    body = []
    for index, node in enumerate(tree.body):
        docstring = index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if (isinstance(node, ast.Expr) and not docstring) or _is_main_guard(node):
            notes.append(f"dropped the module-level `{ast.unparse(node).splitlines()[0][:60]}`")
            continue
        body.append(node)
    changed = len(body) != len(tree.body)
    tree.body = body
    bound = _bound_names(tree)
    missing = _missing_imports(tree, set(allowed_imports), bound)
    if missing:
        tree.body[:0] = [ast.Import(names=[ast.alias(name=m)]) for m in missing]
        notes.append(f"added the missing import of {', '.join(missing)}")
        changed = True
    hints = _missing_typing(tree, set(allowed_imports), bound)
    if hints:
        tree.body[:0] = [ast.ImportFrom(module="typing", names=[ast.alias(name=h) for h in hints], level=0)]
        notes.append(f"added the missing `from typing import {', '.join(hints)}`")
        changed = True
    public = [n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    if not public:
        return (ast.unparse(tree) + "\n" if changed else code), "", notes
    names = {n.name for n in public}
    called = {c.func.id for f in public for c in ast.walk(f) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
              and c.func.id in names and c.func.id != f.name}
    if name in names:
        entry = name
    else:
        roots = [f.name for f in public if f.name not in called]
        entry = (roots or [public[-1].name])[-1]
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    renames: dict[str, str] = {}
    for other in sorted(names - {entry}):
        private = f"_{other}"
        while private in defined or private in renames.values():
            private = f"_{private}"
        renames[other] = private
        notes.append(f"`{other}` made private as `{private}` (a helper of `{entry}`)")
    if name and entry != name and name not in defined:
        renames[entry] = name
        notes.append(f"`{entry}` renamed to `{name}`, the name the request asked for")
        entry = name
    if renames:
        tree = _Rename(renames).visit(tree)
        changed = True
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry)
    if not ast.get_docstring(function) and describe.strip():
        function.body.insert(0, ast.Expr(ast.Constant(" ".join(describe.split())[:160])))
        notes.append("added a docstring from the request")
        changed = True
    return (ast.unparse(tree) + "\n" if changed else code), entry, notes


# ---------------------------------------------------------------------------------- the judge
# The verdict is decided here, never in the sandbox. The code under test shares its process with the
# harness, so anything the harness could say (a "passed" line, an exit status) the code could say too.
# So the sandbox is told only the calls, never what they should return; it reports what each call
# returned as plain data, and the comparison with the expected values happens in this process. Code
# that prints a result line of its own can only claim values, and a value claimed is a value returned.
CHECK_HARNESS = r'''
import ast, contextlib, json, math, sys, traceback

LIMIT = 100_000

def plain(value, depth=0):
    """The value as literal source when it is plain data, else TypeError/ValueError in words."""
    kind = type(value)
    if depth > 40:
        raise ValueError("nested over 40 deep")
    if value is None or kind in (bool, int, str, bytes, complex):
        return repr(value)
    if kind is float:
        if math.isnan(value):
            raise ValueError("returned nan")
        return repr(value) if math.isfinite(value) else ("1e999" if value > 0 else "-1e999")
    if kind is list:
        return "[" + ", ".join(plain(v, depth + 1) for v in value) + "]"
    if kind is tuple:
        return "(" + "".join(plain(v, depth + 1) + ", " for v in value) + ")"
    if kind in (set, frozenset):
        return "{" + ", ".join(sorted(plain(v, depth + 1) for v in value)) + "}" if value else "set()"
    if kind is dict:
        return "{" + ", ".join(plain(k, depth + 1) + ": " + plain(v, depth + 1) for k, v in value.items()) + "}"
    raise TypeError(f"returned a {kind.__name__}, not plain data (numbers, strings, lists, tuples, dicts, sets, None)")

calls = json.loads(open("calls.json").read())
report = {"import_error": None, "results": []}
with contextlib.redirect_stdout(sys.stderr):
    try:
        import tool
        namespace = dict(vars(tool))
    except BaseException as exc:
        report["import_error"] = f"{type(exc).__name__}: {exc}"
        namespace = None
    for call in calls if namespace is not None else []:
        try:
            value = eval(compile(ast.parse(call, mode="eval"), "<check>", "eval"), dict(namespace))
        except BaseException as exc:
            tb = traceback.extract_tb(sys.exc_info()[2])
            where = next((f" (tool.py line {f.lineno})" for f in reversed(tb) if f.filename.endswith("tool.py")), "")
            report["results"].append({"value": None, "error": f"{type(exc).__name__}: {exc}{where}"[:1000]})
            continue
        try:
            text = plain(value)
            if len(text) > LIMIT:
                raise ValueError(f"its value is over {LIMIT} characters long")
        except (TypeError, ValueError, RecursionError) as exc:
            report["results"].append({"value": None, "error": str(exc)[:1000]})
            continue
        report["results"].append({"value": text, "error": ""})
print("A4PS-RESULT " + json.dumps(report))
'''
VALUE_LIMIT = 100_000  # characters of one reported value; the harness refuses longer ones


def same(a: Any, b: Any) -> bool:
    """Equal as plain data: a bool is not a number, int and float compare by value, containers by type."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and type(a) is type(b):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def _reported(text: Any) -> tuple[bool, Any]:
    """(readable, value) of a value the sandbox reported: only literal source is ever evaluated."""
    if not isinstance(text, str) or len(text) > VALUE_LIMIT:
        return False, None
    try:
        return True, ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return False, None


@dataclass
class Verdict:
    """What the judge found for one candidate: per check, whether it held and what the call gave."""

    import_error: str | None
    results: list[dict[str, Any]]
    ran: sandbox.SandboxResult | None = None

    def passed(self, checks: list[Check], origin: str) -> int:
        return sum(1 for c, r in zip(checks, self.results) if c.origin == origin and r.get("ok"))


def compare(checks: list[Check], reported: list[Any]) -> list[dict[str, Any]]:
    """Each check against what the sandbox reported for its call: {"ok", "value" (shown), "error"}."""
    results = []
    for index, check in enumerate(checks):
        row = reported[index] if index < len(reported) and isinstance(reported[index], dict) else None
        if row is None:
            results.append({"ok": False, "value": None, "error": "not run"})
            continue
        if row.get("error"):
            results.append({"ok": False, "value": None, "error": str(row["error"])[:1000]})
            continue
        readable, value = _reported(row.get("value"))
        if not readable:
            results.append({"ok": False, "value": None, "error": "the sandbox reported a value that is not plain data"})
            continue
        expected = ast.literal_eval(check.expected)
        results.append({"ok": same(value, expected), "value": str(row["value"])[:300], "error": ""})
    return results


def judge(code: str, checks: list[Check], *, backend: str, limits: sandbox.Limits) -> Verdict:
    """Run every check's call against the code in the sandbox (never in this process) and compare what
    each returned with the expected value here, where the code cannot reach."""
    payload = json.dumps([c.call for c in checks])
    ran = sandbox.run(CHECK_HARNESS, files={"tool.py": code, "calls.json": payload}, backend=backend, limits=limits)
    report = parse_result_line(ran.stdout)
    if report is None:
        reason = f"killed: {ran.killed_reason} {ran.detail}".strip() if ran.killed_reason else \
            f"the judge gave no verdict (exit code {ran.exit_code})"
        return Verdict(import_error=reason, results=[{"ok": False, "value": None, "error": reason} for _ in checks],
                       ran=ran)
    reported = report.get("results")
    results = compare(checks, reported if isinstance(reported, list) else [])
    import_error = report.get("import_error")
    return Verdict(import_error=str(import_error) if import_error else None, results=results, ran=ran)

# ------------------------------------------------------------------------------------- prompts
# Stop at the closing fence: what a small model writes after its code block is never used.
CODE_STOP = ["\n```\n"]


def _rules(allowed_imports: tuple[str, ...]) -> str:
    return (
        f"{FORGE_SYSTEM}\n\nRules:\n"
        "- Write exactly ONE public function with type hints and a one-line docstring. Helper functions, "
        "if you need any, start with an underscore.\n"
        f"- Import only from: {', '.join(allowed_imports)}.\n"
        "- No print, no input, no files, no code outside functions, no tests.\n"
        "- Reply with a single ```python code block and nothing else."
    )


def _request(spec: str, name: str | None, *, listed: bool) -> str:
    if _is_stub(spec):
        text = f"Complete this function. Keep its name and parameters.\n```python\n{spec.strip()}\n```"
    else:
        named = f"\nName the function `{name}`." if name else ""
        text = f"Write a Python function for this request: {spec.strip()}{named}"
    rules = request_rules(spec) if listed else []
    if len(rules) > 1:
        # A small model follows a rule shown on a line of its own more often than one inside a paragraph
        # (on the tools suite, the greedy reply passed 34 of 70 items' hidden tests against 31 without).
        text += ("\n\nThe request's rules, one per line. The function must follow every one of them, including "
                 "what it says about empty, invalid or unusual input:\n" +
                 "\n".join(f"{number}. {rule}" for number, rule in enumerate(rules, 1)))
    return text


def function_prompt(spec: str, allowed_imports: tuple[str, ...], name: str | None = None, *,
                    listed: bool = True) -> list[dict[str, str]]:
    """The request to BRICK: only the function (its tests are asked for, and judged, separately), the
    request's sentences listed after it as rules. `listed=False`: the request as written, nothing added
    (the evals' `single`, one plain call)."""
    return [{"role": "system", "content": _rules(allowed_imports)},
            {"role": "user", "content": _request(spec, name, listed=listed)}]


def repair_prompt(spec: str, allowed_imports: tuple[str, ...], name: str | None, previous: str,
                  problem: str) -> list[dict[str, str]]:
    """The request again with the last function and what the judge found wrong with it."""
    return [
        *function_prompt(spec, allowed_imports, name),
        {"role": "assistant", "content": f"```python\n{previous.strip()}\n```"},
        {"role": "user", "content": f"{problem}\n\nFix the code. Reply with the complete corrected function in "
                                    "one ```python code block."},
    ]


def tests_prompt(spec: str, name: str, count: int, *, edge_cases: bool = False) -> list[dict[str, str]]:
    """BRICK's test cases for the function, as single-line asserts with literal values; with
    `edge_cases`, the cases the request's wording decides beyond the examples it shows."""
    which = ("Pick edge cases the request's wording decides but its examples do not show: empty or "
             "single-element input, ties, boundaries, repeated values, input the request says to refuse. "
             if edge_cases else "Use small inputs whose result you can work out by hand, including an edge case. ")
    return [
        {"role": "system", "content": (
            f"{FORGE_TESTS_MARK}\nReply with {count} lines in one ```python code block, each exactly of the form "
            f"`assert {name}(<literal arguments>) == <literal expected value>`. {which}"
            "No comments, no other code.")},
        {"role": "user", "content": f"The function: {spec.strip()}"},
    ]


# ------------------------------------------------------------------------------------- the loop
@dataclass
class AttemptReport:
    """One candidate: what BRICK wrote, the checks it was judged on and what the sandbox said."""

    number: int
    reply: str = ""
    code: str = ""
    tests: str = ""
    name: str = ""
    static_ok: bool = False
    static_errors: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_s: float | None = None
    killed_reason: str | None = None
    backend: str = ""
    passed: bool = False
    error: str = ""
    model_ms: float = 0.0
    tokens: int = 0  # completion tokens of every model call this attempt made
    truncated_retries: int = 0  # replies cut at max_tokens and asked again with a larger budget
    spec_passed: int = 0
    words_passed: int = 0  # results the request states in words (stated_checks)
    model_passed: int = 0
    notes: list[str] = field(default_factory=list)  # what was mended in form (renamed helpers, dropped prints)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ForgeOutcome:
    """The loop's end: the chosen candidate's code and the checks it passes, or why it gave up."""

    ok: bool
    attempts: list[AttemptReport]
    name: str = ""
    code: str = ""
    tests: str = ""
    error: str = ""
    tokens: int = 0
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ForgeBudget:
    """What the run that asked for a tool has left: generated tokens and seconds (None: no limit)."""

    tokens: int | None = None
    seconds: float | None = None
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def spent(self, tokens: int) -> str:
        """Why no further attempt may start ("" while both last)."""
        if self.tokens is not None and tokens >= self.tokens:
            return f"the run's token budget ran out ({tokens} tokens spent here)"
        if self.seconds is not None and self.clock() - self.started >= self.seconds:
            return f"the run's time budget ran out ({self.seconds:.0f} s were left)"
        return ""


@dataclass
class _Candidate:
    report: AttemptReport
    verdict: Verdict | None


def tests_source(name: str, checks: list[Check]) -> str:
    if not checks:
        return ""
    body = "\n".join(f"    {c.source()}" for c in checks)
    return f"def test_{name}():\n{body}\n"


def judge_text(checks: list[Check], verdict: Verdict) -> str:
    """The judge's findings in words, for the attempt record and for BRICK."""
    if verdict.import_error:
        return f"The function could not be imported: {verdict.import_error}"
    lines = []
    for check, result in zip(checks, verdict.results):
        mark = "PASS" if result.get("ok") else "FAIL"
        got = result.get("error") or f"returned {result.get('value')}"
        said = f' (the request: "{check.said}")' if check.said else ""
        lines.append(f"{mark} [{check.origin}] {check.call} == {check.expected}: {got}{said}")
    return "\n".join(lines)


def _problem(checks: list[Check], verdict: Verdict, *, with_test_cases: bool) -> str:
    """What BRICK is told: the request's examples the function fails and the calls that raised; with
    `with_test_cases`, its own failing test cases too (they may be the wrong side)."""
    if verdict.import_error:
        return f"Importing your function failed: {verdict.import_error}"
    failing = []
    for check, result in zip(checks, verdict.results):
        if result.get("ok") or (check.origin == "model" and not with_test_cases and not result.get("error")):
            continue
        whose = {"spec": "an example of the request", "words": f'the request says "{check.said}"'}.get(
            check.origin, "your own test case")
        got = result.get("error") or f"it returned {result.get('value')}"
        failing.append(f"- {check.call} should be {check.expected} ({whose}), but {got}")
    if not failing:
        return ""
    hint = ("" if all(c.origin != "model" for c, r in zip(checks, verdict.results) if not r.get("ok"))
            else "\nIf a test case of yours is wrong and the function is right, return the function unchanged.")
    return "The function is wrong on these calls:\n" + "\n".join(failing[:6]) + hint


class Seeds:
    """The sampler seeds of one forge run: None throughout (the backend picks one per request), or
    `base`, `base + 1`, … one per model call, so that a run can be drawn again call for call."""

    def __init__(self, base: int | None) -> None:
        self.base, self.used = base, 0

    def options(self) -> dict[str, int]:
        """The next call's seed as a chat() keyword; none at all when unseeded (a model without seeds)."""
        if self.base is None:
            return {}
        self.used += 1
        return {"seed": (self.base + self.used - 1) % 2**31}


class _Writer:
    """One model call for code, asked again with twice the budget when the reply was cut off."""

    def __init__(self, model: Any, config: ForgeSettings, on_token: Callable[[str], None] | None,
                 seeds: Seeds) -> None:
        self.model, self.config, self.on_token, self.seeds = model, config, on_token, seeds

    def ask(self, messages: list[dict[str, str]], *, temperature: float, report: AttemptReport,
            max_tokens: int | None = None) -> str:
        budget = max_tokens or self.config.max_tokens
        for _ in range(2):
            started = time.perf_counter()
            result = self.model.chat("BRICK", messages, max_tokens=budget, temperature=temperature,
                                     on_token=self.on_token, stop=CODE_STOP, **self.seeds.options())
            report.model_ms += (time.perf_counter() - started) * 1000
            tokens = int(getattr(result, "completion_tokens", 0) or 0)
            report.tokens += tokens
            reply = result.content or ""
            if tokens < budget:
                return reply  # ended on its own (a stop sequence or the end of the answer)
            report.truncated_retries += 1  # cut off mid-code: the same budget would cut it again
            budget *= 2
        return reply


def forge_loop(
    spec: str,
    *,
    model: Any,
    config: ForgeSettings,
    on_attempt: Callable[[AttemptReport], None] | None = None,
    on_phase: Callable[[int, str], None] | None = None,
    on_token: Callable[[int], Callable[[str], None] | None] | None = None,
    seed: int | None = None,
    budget: ForgeBudget | None = None,
) -> ForgeOutcome:
    """Forge a tool for `spec`: BRICK writes a function (greedy first); the spec's own examples are
    authoritative checks, so are the results its words state for empty, blank, negative or bounded input
    (stated_checks) while some candidate meets them; BRICK's separately written test cases are advice;
    every candidate is judged in the sandbox. The first candidate that passes every example and stated
    result (or, without examples, every test case) is taken at once; otherwise more candidates are
    written (a repair when an example or stated result fails, a fresh sample otherwise), up to
    config.max_attempts, and the best is taken, a disputed test case
    losing to candidates that agree against it. Never executes generated code in this process.
    `seed`: the first model call's sampler seed, the next calls' counting on from it (evals draw the
    same samples for every variant they compare); None lets the backend pick. `budget`: what the run that
    asked has left; no attempt after the first starts once it is spent (the best so far is chosen)."""
    spec = snake_calls(spec)
    name = requested_name(spec)
    spec_side = spec_checks(spec, name)
    words_side = stated_checks(spec, name, spec_side)
    model_side: list[Check] = []
    candidates: list[_Candidate] = []
    tokens = 0
    problem = ""
    repair_from: _Candidate | None = None  # the candidate `problem` describes
    seeds = Seeds(seed)
    stopped = ""
    for number in range(1, config.max_attempts + 1):
        if number > 1 and budget is not None and (stopped := budget.spent(tokens)):
            break
        report = AttemptReport(number=number)
        if on_phase:
            on_phase(number, "writing")
        writer = _Writer(model, config, on_token(number) if on_token else None, seeds)
        previous = repair_from.report if repair_from is not None else None
        # Greedy first; later candidates warmer, so that they differ from each other.
        temperature = 0.0 if number == 1 else min(1.0, config.temperature + 0.3 * (number - 1))
        if previous is not None and problem:
            messages = repair_prompt(spec, config.allowed_imports, name, previous.code, problem)
        else:
            messages = function_prompt(spec, config.allowed_imports, name)
        try:
            report.reply = writer.ask(messages, temperature=temperature, report=report)
            if candidates and _same_code(_mended(report.reply, name, spec, config.allowed_imports),
                                          [c.report.code for c in candidates]):
                # Judging the same code twice teaches nothing: ask afresh instead.
                report.reply = writer.ask(function_prompt(spec, config.allowed_imports, name),
                                          temperature=FRESH_TEMPERATURE, report=report)
        except Exception as exc:  # a model that fails is one failed attempt, shown with its reason
            report.error = f"the model call failed: {type(exc).__name__}: {exc}"
            tokens += report.tokens
            candidates.append(_Candidate(report, None))
            if on_attempt:
                on_attempt(report)
            continue
        source = extract_code(report.reply)
        try:
            code, own_tests = split_tests(source)
        except SyntaxError as exc:
            code, own_tests = source, ""
            report.static_errors = [f"SyntaxError, line {exc.lineno}: {exc.msg}" if "```" in report.reply else
                                    "the reply holds no ```python code block with the function."]
        notes: list[str] = []
        if not report.static_errors:
            code, report.name, notes = normalise_functions(code, name, describe=_describe(spec),
                                                          allowed_imports=config.allowed_imports)
            check = static_check(code, "", config.allowed_imports)
            report.static_ok, report.static_errors = check.ok, check.errors
            report.name = report.name or check.name
        report.code, report.notes = code, notes
        if not report.static_ok:
            report.error = "static checks failed: " + "; ".join(report.static_errors)
            problem = "Your code was rejected before it ran:\n" + "\n".join(f"- {e}" for e in report.static_errors)
            tokens += report.tokens
            candidates.append(_Candidate(report, None))
            repair_from = candidates[-1]
            if on_attempt:
                on_attempt(report)
            continue
        if not model_side:
            model_side = assert_checks(own_tests, report.name)
            if not model_side and (not spec_side or config.edge_cases):
                model_side = _ask_tests(model, spec, report, config, edge_cases=bool(spec_side), seeds=seeds)
        checks = _unique([*spec_side, *words_side, *model_side])
        if on_phase:
            on_phase(number, "testing")
        try:
            verdict = judge(code, checks, backend=config.backend, limits=config.limits)
        except sandbox.SandboxError as exc:
            report.error = f"the sandbox could not run the checks: {exc}"
            candidates.append(_Candidate(report, None))
            if on_attempt:
                on_attempt(report)
            return ForgeOutcome(False, [c.report for c in candidates], error=report.error,
                                tokens=tokens + report.tokens)
        _record_run(report, verdict, checks)
        tokens += report.tokens
        candidates.append(_Candidate(report, verdict))
        if on_attempt:
            on_attempt(report)
        if report.passed:
            break
        # After the greedy candidate a repair sees every failure; later candidates repair only real
        # errors and missed examples, else they are fresh samples that the agreement vote compares.
        problem = _problem(checks, verdict, with_test_cases=number == 1)
        repair_from = candidates[-1]
        ahead = _ahead(candidates)
        if ahead is not None and ahead is not repair_from and ahead.verdict is not None:
            # The last change lost ground (fewer examples or stated results met than an earlier
            # candidate): the earlier one is repaired again, not the step back.
            problem, repair_from = _problem(checks, ahead.verdict, with_test_cases=False), ahead
        elif problem and len(candidates) >= 2 and _same_behaviour(candidates[-1].verdict, candidates[-2].verdict):
            # The last change gave the very same results on every check: told the same failures again,
            # a small model repeats itself; a fresh sample at least differs.
            problem = ""
    outcome = _choose(candidates, _unique([*spec_side, *words_side, *model_side]), tokens)
    if stopped:
        said = f"stopped after {len(candidates)} of {config.max_attempts} attempts: {stopped}"
        outcome.notes.append(said)
        if not outcome.ok:
            outcome.error = f"{outcome.error} ({said})"
    return outcome


def _ahead(candidates: list[_Candidate]) -> _Candidate | None:
    """The judged candidate meeting the most examples, then stated results; the newest among equals."""
    judged = [c for c in candidates if c.verdict is not None and not c.verdict.import_error]
    return max(judged, key=lambda c: (c.report.spec_passed, c.report.words_passed, c.report.number), default=None)


def _same_behaviour(a: Verdict | None, b: Verdict | None) -> bool:
    """Whether two judged candidates gave the same value or error on every check."""
    if a is None or b is None or a.import_error or b.import_error:
        return False
    def seen(v: Verdict) -> list[tuple[Any, Any]]:
        return [(r.get("value"), r.get("error")) for r in v.results]

    return seen(a) == seen(b)


def _describe(spec: str) -> str:
    """A one-line description of the request: a stub's own docstring line, else its first sentence."""
    lines = _docstring(spec).strip().splitlines() if _is_stub(spec) else []
    if lines:
        return lines[0].strip()
    return re.split(r"(?<=[.;])\s", spec.strip(), maxsplit=1)[0]


def _shape(code: str) -> str | None:
    """A candidate's identity: its syntax tree (formatting and comments aside)."""
    try:
        return ast.dump(ast.parse(code))
    except SyntaxError:
        return None


def _mended(reply: str, name: str | None, spec: str, allowed_imports: tuple[str, ...]) -> str:
    """The code a reply would become as a candidate (tests split off, form mended)."""
    source = extract_code(reply)
    try:
        code = split_tests(source)[0]
    except SyntaxError:
        return source
    return normalise_functions(code, name, describe=_describe(spec), allowed_imports=allowed_imports)[0]


def _same_code(code: str, earlier: list[str]) -> bool:
    """Whether `code` is, as a syntax tree, one of the earlier candidates' code."""
    mine = _shape(code)
    return mine is not None and any(mine == _shape(other) for other in earlier if other)


def _ask_tests(model: Any, spec: str, report: AttemptReport, config: ForgeSettings, *,
               seeds: Seeds, edge_cases: bool = False) -> list[Check]:
    """BRICK's test cases, asked for once when the reply has none: any cases when the request has no
    examples, else (forge.edge_cases) the edge cases its wording decides that its examples leave open."""
    started = time.perf_counter()
    try:
        result = model.chat("BRICK", tests_prompt(spec, report.name, TEST_CASES, edge_cases=edge_cases),
                            max_tokens=TESTS_MAX_TOKENS,
                            temperature=0.0, stop=CODE_STOP, **seeds.options())
    except Exception:  # without test cases the candidates are still judged on running at all
        return []
    finally:
        report.model_ms += (time.perf_counter() - started) * 1000
    report.tokens += int(getattr(result, "completion_tokens", 0) or 0)
    return assert_checks(extract_code(result.content or ""), report.name)[:TEST_CASES + 1]


def _record_run(report: AttemptReport, verdict: Verdict, checks: list[Check]) -> None:
    ran = verdict.ran
    if ran is not None:
        report.exit_code, report.stderr = ran.exit_code, ran.stderr
        report.duration_s, report.killed_reason, report.backend = ran.duration_s, ran.killed_reason, ran.backend
    report.tests = tests_source(report.name, checks)
    mended = "".join(f"Mended: {note}\n" for note in report.notes)
    report.stdout = mended + judge_text(checks, verdict)
    report.spec_passed = verdict.passed(checks, "spec")
    report.words_passed = verdict.passed(checks, "words")
    report.model_passed = verdict.passed(checks, "model")
    spec_total = sum(1 for c in checks if c.origin == "spec")
    words_total = sum(1 for c in checks if c.origin == "words")
    model_total = len(checks) - spec_total - words_total
    words_missed = "" if report.words_passed == words_total else \
        f"fails {words_total - report.words_passed} result(s) the request states in words"
    if verdict.import_error:
        report.error = verdict.import_error
    elif spec_total:
        # The examples decide, and what the request states in words; BRICK's edge cases, when there are
        # any, must hold too before the loop stops early (otherwise more candidates are written and the
        # best is chosen).
        report.passed = report.spec_passed == spec_total and not words_missed and report.model_passed == model_total
        report.error = "" if report.passed else (
            f"fails {spec_total - report.spec_passed} of the request's examples" if report.spec_passed < spec_total
            else words_missed or f"fails {model_total - report.model_passed} of its edge-case test cases")
    else:
        report.passed = not words_missed and report.model_passed == model_total and \
            not any(r.get("error") for r in verdict.results)
        report.error = "" if report.passed else (
            words_missed or f"fails {model_total - report.model_passed} of its test cases")


def _distinct(candidates: list[_Candidate]) -> list[_Candidate]:
    """Judged candidates, one per distinct code (the same code twice is one opinion, not two)."""
    seen: set[str | None] = set()
    out = []
    for cand in candidates:
        if cand.verdict is None or cand.verdict.import_error:
            continue
        shape = _shape(cand.report.code)
        if shape not in seen:
            seen.add(shape)
            out.append(cand)
    return out


def _agreement(candidates: list[_Candidate]) -> dict[int, int]:
    """Per candidate: on how many (check, other distinct candidate) pairs both calls returned the same value."""
    judged = _distinct(candidates)
    scores: dict[int, int] = {}
    for cand in judged:
        score = 0
        for other in judged:
            if other is cand or cand.verdict is None or other.verdict is None:
                continue
            for mine, theirs in zip(cand.verdict.results, other.verdict.results):
                if not mine.get("error") and mine.get("value") is not None and mine.get("value") == theirs.get("value"):
                    score += 1
        scores[cand.report.number] = score
    return scores


def _disputed(candidates: list[_Candidate], checks: list[Check]) -> set[int]:
    """Indexes of BRICK's test cases that two distinct candidates answer alike, against the case."""
    out = set()
    judged = _distinct(candidates)
    for index, check in enumerate(checks):
        if check.origin != "model":
            continue
        values = [c.verdict.results[index].get("value") for c in judged
                  if c.verdict and not c.verdict.results[index].get("ok") and not c.verdict.results[index].get("error")]
        if any(values.count(v) >= 2 for v in values if v is not None):
            out.add(index)
    return out


def _choose(candidates: list[_Candidate], checks: list[Check], tokens: int) -> ForgeOutcome:
    """The best judged candidate: every example passed first, then agreement with the other candidates,
    then test cases passed, then the earliest. Without examples a candidate that never ran cleanly is
    not registered; with examples only one that passes them all is."""
    attempts = [c.report for c in candidates]
    judged = [c for c in candidates if c.verdict is not None and not c.verdict.import_error]
    if not judged:
        last = attempts[-1].error if attempts else "no attempt was made"
        return ForgeOutcome(False, attempts, error=f"gave up after {len(attempts)} attempt(s); last: {last}",
                            tokens=tokens, checks=checks)
    agreement = _agreement(candidates)
    spec_total = sum(1 for c in checks if c.origin == "spec")

    def rank(c: _Candidate) -> tuple[int, int, int, int, int, int]:
        clean = sum(1 for r in c.verdict.results if not r.get("error")) if c.verdict else 0
        return (c.report.spec_passed, c.report.words_passed, agreement.get(c.report.number, 0),
                c.report.model_passed, clean, -c.report.number)

    best = max(judged, key=rank)
    report = best.report
    assert best.verdict is not None
    if spec_total and report.spec_passed < spec_total:
        return ForgeOutcome(False, attempts, tokens=tokens, checks=checks, error=(
            f"gave up after {len(attempts)} attempt(s): no function passes all {spec_total} example(s) of the "
            f"request (the best passes {report.spec_passed}); last: {attempts[-1].error}"))
    if not spec_total and checks and not any(not r.get("error") for r in best.verdict.results):
        return ForgeOutcome(False, attempts, tokens=tokens, checks=checks,
                            error=f"gave up after {len(attempts)} attempt(s): every call of the function failed")
    disputed = _disputed(candidates, checks)
    failing = [(i, c) for i, (c, r) in enumerate(zip(checks, best.verdict.results))
               if not r.get("ok") and c.origin == "model"]
    undisputed = [c for i, c in failing if i not in disputed]
    if not spec_total and undisputed:
        # Without the person's examples, BRICK's own test case is the only evidence: a function that
        # fails it, with no other candidate disputing it, is not registered.
        return ForgeOutcome(False, attempts, tokens=tokens, checks=checks, error=(
            f"gave up after {len(attempts)} attempt(s): the best function fails {len(undisputed)} test case(s) "
            f"that no other candidate disputes, e.g. {undisputed[0].source()}"))
    held = [c for c, r in zip(checks, best.verdict.results) if r.get("ok")]
    notes = [*report.notes]
    notes += [f'fails what the request states ("{c.said}"), as every candidate did: {c.source()}'
              for c, r in zip(checks, best.verdict.results) if c.origin == "words" and not r.get("ok")]
    notes += [f"test case dropped as disputed by agreeing candidates: {c.source()}"
              for i, c in failing if i in disputed]
    notes += [f"test case not kept (the function passes the request's examples): {c.source()}" for c in undisputed]
    return ForgeOutcome(True, attempts, name=report.name, code=report.code, tests=tests_source(report.name, held),
                        tokens=tokens, checks=held, notes=notes)
