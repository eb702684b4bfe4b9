"""The Tool Forge loop: BRICK writes a function and its tests, static checks, sandboxed tests, retries."""
from __future__ import annotations

import ast
import json
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
You are BRICK: precise, careful, and you test what you write."""

TOOL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESULT_MARK = "A4PS-RESULT "
# Builtins that reach outside the function's arguments; the sandbox would stop them, but a tool
# that needs them is not the kind of tool the registry holds.
FORBIDDEN_NAMES = frozenset({
    "eval", "exec", "compile", "open", "__import__", "input", "breakpoint", "globals", "locals", "vars",
    "setattr", "delattr", "memoryview", "exit", "quit", "help",
})
TEST_ONLY_IMPORTS = frozenset({"unittest"})
FEEDBACK_CHARS = 1800  # the tail of the sandbox output BRICK sees: small models have small contexts

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)

# Exact expected values: with float-tolerance asserts (abs(x - y) < eps) the small models get signs wrong.
EXAMPLE = '''```python
def count_vowels(text: str) -> int:
    """Return how many vowels (a, e, i, o, u) the text contains."""
    return sum(1 for ch in text.lower() if ch in "aeiou")


def test_count_vowels():
    assert count_vowels("banana") == 3
    assert count_vowels("Sky") == 0
```'''


# ----------------------------------------------------------------------------------- prompts
EXAMPLE_SPEC = "count the vowels in a text"
EXAMPLE_NAME = "count_vowels"


def first_prompt(spec: str, allowed_imports: tuple[str, ...]) -> list[dict[str, str]]:
    """The request to BRICK: one function with a docstring, then its tests, in one code block.

    The format is shown as an earlier exchange about another tool (few-shot): small models copy an
    example that sits inside the request itself instead of writing the requested function."""
    rules = (
        f"{FORGE_SYSTEM}\n\nRules for every tool:\n"
        "- Exactly ONE public function (snake_case name, type hints, a one-line docstring). "
        "Helper functions, if any, start with an underscore.\n"
        f"- Import only from: {', '.join(allowed_imports)}.\n"
        "- No print, no input, no files, no code outside functions.\n"
        "- After the function, one or two test functions named test_... that use assert.\n"
        "- Reply with a single ```python code block."
    )
    return [
        {"role": "system", "content": rules},
        {"role": "user", "content": f"Write a Python tool for this request: {EXAMPLE_SPEC}"},
        {"role": "assistant", "content": EXAMPLE},
        {"role": "user", "content": f"Write a Python tool for this request: {spec}"},
    ]


def retry_prompt(spec: str, allowed_imports: tuple[str, ...], previous: str, problem: str) -> list[dict[str, str]]:
    """The request again with the last code and what went wrong (only the last attempt: short context)."""
    return [
        *first_prompt(spec, allowed_imports),
        {"role": "assistant", "content": f"```python\n{previous.strip()}\n```"},
        {"role": "user", "content": (
            f"{problem}\n\nFix the code. If the function does what the request asks, the test's expected "
            "value is wrong: fix the test. Reply with the complete corrected ```python code block: the "
            "function first, then one short test function with two or three asserts."
        )},
    ]


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
    test_names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name.startswith(("test", "Test"))}
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
    found = []
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


def static_check(code: str, tests: str, allowed_imports: tuple[str, ...] | set[str]) -> StaticCheck:
    """Exactly one public snake_case function with a docstring, allowed imports only, no top-level
    statements besides imports, function definitions and a docstring; tests present and importable."""
    errors: list[str] = []
    allowed = set(allowed_imports)
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return StaticCheck(False, [f"SyntaxError in the function, line {exc.lineno}: {exc.msg}"])
    public: list[ast.FunctionDef] = []
    for i, node in enumerate(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.FunctionDef):
            if not node.name.startswith("_"):
                public.append(node)
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a module docstring
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
    errors += _check_imports(tree, allowed, "function")
    errors += _check_names(tree, "function")
    if not tests.strip():
        errors.append("no tests: after the function, write test functions named test_... that use assert.")
    else:
        try:
            test_tree = ast.parse(tests)
        except SyntaxError as exc:
            errors.append(f"SyntaxError in the tests, line {exc.lineno}: {exc.msg}")
        else:
            errors += _check_imports(test_tree, allowed | TEST_ONLY_IMPORTS, "tests")
    return StaticCheck(not errors, errors, name)


# ------------------------------------------------------------------------------ sandbox harnesses
# Runs inside the sandbox: imports the tests (which see the tool's names), runs test functions and
# unittest cases, prints each outcome with its traceback, and a last machine-readable line.
TEST_HARNESS = r'''
import ast, json, linecache, sys, traceback, unittest

passed, failed = [], []


def explain(tb):
    """Under a failed assert: what each call in it returned, so a wrong expectation is visible."""
    frame = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith("tool_tests.py"):
            frame, line = tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next
    if frame is None:
        return
    source = linecache.getline(frame.f_code.co_filename, line).strip()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in ("abs", "len", "round"):
            try:
                value = eval(compile(ast.Expression(node), "<assert>", "eval"), frame.f_globals, frame.f_locals)
            except BaseException as exc:
                value = f"raised {type(exc).__name__}: {exc}"
            print(f"  note: {ast.unparse(node)} returned {value!r}")
try:
    import tool_tests as module
except BaseException:
    traceback.print_exc()
    print("A4PS-RESULT " + json.dumps({"passed": [], "failed": ["(import)"]}))
    sys.exit(1)
for name, obj in list(vars(module).items()):
    if name.startswith("test") and callable(obj) and not isinstance(obj, type) \
            and getattr(obj, "__module__", "") == "tool_tests":
        try:
            obj()
        except BaseException:
            failed.append(name)
            print("FAIL " + name)
            traceback.print_exc(file=sys.stdout)
            explain(sys.exc_info()[2])
        else:
            passed.append(name)
            print("PASS " + name)
def _cases(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _cases(item)
        else:
            yield str(item)

suite = unittest.defaultTestLoader.loadTestsFromModule(module)
cases = list(_cases(suite))  # before running: a run empties the suite
if cases:
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    bad = {str(t) for t, _ in result.failures + result.errors}
    for case in cases:
        (failed if case in bad else passed).append(case)
print("A4PS-RESULT " + json.dumps({"passed": passed, "failed": failed}))
sys.exit(0 if passed and not failed else 1)
'''

TESTS_PRELUDE = (
    "import tool as _tool\n"
    "globals().update({k: v for k, v in vars(_tool).items() if not k.startswith('__')})\n"
)

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


def run_tests(code: str, tests: str, *, backend: str, limits: sandbox.Limits) -> sandbox.SandboxResult:
    """Run the tests against the tool in the sandbox (never in this process)."""
    return sandbox.run(TEST_HARNESS, files={"tool.py": code, "tool_tests.py": TESTS_PRELUDE + tests},
                       backend=backend, limits=limits)


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


# ------------------------------------------------------------------------------------- the loop
@dataclass
class AttemptReport:
    """One try: what BRICK wrote, what the checks and the sandbox said."""

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ForgeOutcome:
    """The loop's end: the passing attempt's code and tests, or why it gave up."""

    ok: bool
    attempts: list[AttemptReport]
    name: str = ""
    code: str = ""
    tests: str = ""
    error: str = ""


def _tail(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _problem(report: AttemptReport) -> str:
    """What BRICK is told about a failed attempt: the checks' errors or the sandbox's real output."""
    if not report.static_ok:
        listing = "\n".join(f"- {e}" for e in report.static_errors)
        return f"Your code was rejected before it ran:\n{listing}"
    if report.killed_reason:
        head = f"The tests were stopped by the sandbox ({report.error or report.killed_reason})."
    else:
        head = f"The tests failed in the sandbox (exit code {report.exit_code})."
    output = _tail("\n".join(p for p in (report.stdout.replace(RESULT_MARK, "result: "), report.stderr) if p.strip()),
                   FEEDBACK_CHARS)
    return f"{head}\nOutput:\n```\n{output}\n```"


def forge_loop(
    spec: str,
    *,
    model: Any,
    config: ForgeSettings,
    on_attempt: Callable[[AttemptReport], None] | None = None,
    on_phase: Callable[[int, str], None] | None = None,
    on_token: Callable[[int], Callable[[str], None] | None] | None = None,
) -> ForgeOutcome:
    """Ask BRICK for a function + tests, check it, test it in the sandbox; on failure feed the real
    error back, up to config.max_attempts. Calls on_attempt after each attempt and on_phase(n,
    "writing"|"testing") as it goes. Never executes generated code in this process."""
    attempts: list[AttemptReport] = []
    previous = ""
    problem = ""
    for number in range(1, config.max_attempts + 1):
        report = AttemptReport(number=number)
        if on_phase:
            on_phase(number, "writing")
        messages = (first_prompt(spec, config.allowed_imports) if not previous
                    else retry_prompt(spec, config.allowed_imports, previous, problem))
        started = time.perf_counter()
        try:
            result = model.chat("BRICK", messages, max_tokens=config.max_tokens,
                                temperature=config.temperature + 0.1 * (number - 1),
                                on_token=on_token(number) if on_token else None)
        except Exception as exc:  # a model that fails is one failed attempt, shown with its reason
            report.model_ms = (time.perf_counter() - started) * 1000
            report.error = f"the model call failed: {type(exc).__name__}: {exc}"
            attempts.append(report)
            if on_attempt:
                on_attempt(report)
            continue
        report.model_ms = (time.perf_counter() - started) * 1000
        report.reply = result.content or ""
        source = extract_code(report.reply)
        try:
            report.code, report.tests = split_tests(source)
        except SyntaxError as exc:
            report.code, report.tests = source, ""
            report.static_errors = [f"SyntaxError, line {exc.lineno}: {exc.msg}" if "```" in report.reply else
                                    "the reply holds no ```python code block with the function and its tests."]
        else:
            check = static_check(report.code, report.tests, config.allowed_imports)
            if check.name == EXAMPLE_NAME and "vowel" not in spec.lower():
                check.errors.append(f"`{EXAMPLE_NAME}` is the example, not this request: write the function for: {spec}")
                check.ok = False
            report.static_ok, report.static_errors, report.name = check.ok, check.errors, check.name
        if not report.static_ok:
            report.error = "static checks failed"
        else:
            if on_phase:
                on_phase(number, "testing")
            try:
                ran = run_tests(report.code, report.tests, backend=config.backend, limits=config.limits)
            except sandbox.SandboxError as exc:
                report.error = f"the sandbox could not run the tests: {exc}"
                attempts.append(report)
                if on_attempt:
                    on_attempt(report)
                return ForgeOutcome(False, attempts, error=report.error)
            report.exit_code, report.stdout, report.stderr = ran.exit_code, ran.stdout, ran.stderr
            report.duration_s, report.killed_reason, report.backend = ran.duration_s, ran.killed_reason, ran.backend
            summary = parse_result_line(ran.stdout) or {}
            report.passed = ran.ok and bool(summary.get("passed")) and not summary.get("failed")
            if not report.passed:
                failed = summary.get("failed") or []
                report.error = (f"killed: {ran.killed_reason} {ran.detail}".strip() if ran.killed_reason else
                                f"failed: {', '.join(failed)}" if failed else f"exit code {ran.exit_code}")
        attempts.append(report)
        if on_attempt:
            on_attempt(report)
        if report.passed:
            return ForgeOutcome(True, attempts, name=report.name, code=report.code, tests=report.tests)
        previous = source or report.reply
        problem = _problem(report)
    last = attempts[-1].error if attempts else "no attempt was made"
    return ForgeOutcome(False, attempts, error=f"gave up after {len(attempts)} attempt(s); last: {last}")
