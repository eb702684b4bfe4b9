"""The eval suites: tool-writing items (suites/tools.jsonl) and question items (suites/tasks.jsonl).

Standard library only, so the suites can be loaded and checked without Django or the rest of the project.
The schema of both files, and the comparison rules `check_answer` applies, are in suites/README.md.
"""
from __future__ import annotations

import ast
import json
import keyword
import math
import os
import re
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

SUITES_DIR = Path(__file__).resolve().parent / "suites"
TOOLS_PATH = SUITES_DIR / "tools.jsonl"
TASKS_PATH = SUITES_DIR / "tasks.jsonl"

TOOL_CATEGORIES = ("strings", "lists", "numbers", "dates", "parsing", "combinatorics", "algorithms")
TOOL_STYLES = ("docstring", "plain", "helper")
TASK_CATEGORIES = ("arithmetic", "units", "dates", "logic", "counting", "strings", "memory", "documents", "web")
COMPARE_RULES = ("number", "exact", "date", "set")
NEEDS = ("tool", "memory", "documents", "web")
DOCUMENT_SUFFIXES = (".txt", ".md", ".html")  # what a task may ship (the library reads these and more)
# What a reference solution and hidden tests may import (the forge's default allowed imports).
ALLOWED_IMPORTS = (
    "math", "cmath", "statistics", "re", "json", "datetime", "itertools", "functools", "collections",
    "string", "fractions", "decimal", "operator", "heapq", "bisect", "textwrap", "unicodedata", "typing",
    "dataclasses", "enum", "random", "calendar",
)
DEFAULT_TIMEOUT_S = 10.0
OUTPUT_LIMIT = 4000  # characters of hidden-test output kept

TOOL_REQUIRED = ("id", "category", "style", "name", "spec", "examples", "hidden_tests", "reference")
TOOL_OPTIONAL = ("timeout_s",)
TASK_REQUIRED = ("id", "category", "task", "answer", "compare", "needs")
TASK_OPTIONAL = ("tolerance", "choices", "setup")

_ID_RE = re.compile(r"[a-z][a-z0-9]*-[0-9]{3}")
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_ISO_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CITATION_RE = re.compile(r"\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\]")

Answer = int | float | str | tuple[str, ...]


class SuiteError(ValueError):
    """A suite file that breaks its schema; the message names the file, the line and what is wrong."""


@dataclass(frozen=True)
class ToolExample:
    """One example call shown in a tool spec: the function applied to args returns expected."""

    args: tuple[Any, ...]
    expected: Any


@dataclass(frozen=True)
class ToolItem:
    """A function for the Tool Forge to write from spec, judged by hidden tests it never sees."""

    id: str
    category: str
    style: str
    name: str
    spec: str
    examples: tuple[ToolExample, ...]
    hidden_tests: str
    reference: str
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class TaskItem:
    """A question with a short answer, judged by `check_answer` under the item's compare rule."""

    id: str
    category: str
    task: str
    answer: Answer
    compare: str
    needs: tuple[str, ...] = ()
    tolerance: float = 0.0
    choices: tuple[str, ...] | None = None
    setup_memory: tuple[str, ...] = ()  # setup.memory: facts an earlier run must have stored
    setup_documents: tuple[tuple[str, str], ...] = ()  # setup.documents: (file name, text) in the library
    setup_web: tuple[tuple[str, str, str], ...] = ()  # setup.web: (url, title, html) a web search finds
    evidence: str = ""  # setup.evidence: the words in a shipped document or page that hold the answer


# ----------------------------------------------------------------------------------- reading lines
def _kind(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r} in one object")
        obj[key] = value
    return obj


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


class _Line:
    """One JSON object of a suite file, with checked accessors whose errors name the file and line."""

    def __init__(self, source: str, lineno: int, obj: dict[str, Any]) -> None:
        self.source = source
        self.lineno = lineno
        self.obj = obj

    def fail(self, message: str) -> NoReturn:
        raise SuiteError(f"{self.source}:{self.lineno}: {message}")

    def check_keys(self, required: Sequence[str], optional: Sequence[str]) -> None:
        for key in self.obj:
            if key not in required and key not in optional:
                self.fail(f"unknown key {key!r}")
        for key in required:
            if key not in self.obj:
                self.fail(f"missing key {key!r}")

    def typed(self, key: str, value: Any, kind: str) -> Any:
        if _kind(value) != kind:
            self.fail(f"{key} must be {_a(kind)}, not {_a(_kind(value))}")
        return value

    def text(self, key: str) -> str:
        value: str = self.typed(key, self.obj[key], "string")
        if not value.strip():
            self.fail(f"{key} must not be empty")
        return value

    def choice(self, key: str, allowed: Sequence[str]) -> str:
        value = self.text(key)
        if value not in allowed:
            self.fail(f"{key} {value!r} is not one of: {', '.join(allowed)}")
        return value

    def ident(self) -> str:
        value = self.text("id")
        if not _ID_RE.fullmatch(value):
            self.fail(f"id {value!r} must look like 'abc-001' (lowercase prefix, '-', three digits)")
        return value

    def number(self, key: str, value: Any) -> float:
        number: int | float = self.typed(key, value, "number")
        if not math.isfinite(number):
            self.fail(f"{key} must be a finite number")
        return number

    def strings(self, key: str, value: Any, *, allow_empty: bool) -> tuple[str, ...]:
        items: list[Any] = self.typed(key, value, "array")
        if not items and not allow_empty:
            self.fail(f"{key} must not be an empty array")
        for i, element in enumerate(items):
            if _kind(element) != "string" or not element.strip():
                self.fail(f"{key}[{i}] must be a non-empty string, not {json.dumps(element)}")
        folded = [element.casefold() for element in items]
        for i, element in enumerate(folded):
            if element in folded[:i]:
                self.fail(f"{key}[{i}] {items[i]!r} repeats an earlier element")
        return tuple(items)

    def python(self, key: str) -> str:
        source = self.text(key)
        try:
            compile(source, f"<{key}>", "exec", dont_inherit=True)
        except SyntaxError as exc:
            self.fail(f"{key} is not valid Python: {exc.msg} (its line {exc.lineno})")
        return source


def _lines(path: Path) -> Iterator[_Line]:
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path.name}: cannot read: {exc}") from exc
    if not content.strip():
        raise SuiteError(f"{path.name}: the file holds no items")
    for lineno, raw in enumerate(content.splitlines(), 1):
        if not raw.strip():
            raise SuiteError(f"{path.name}:{lineno}: blank line (one JSON object per line, no blank lines)")
        try:
            obj = json.loads(raw, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{path.name}:{lineno}: invalid JSON: {exc.msg} at column {exc.colno}") from None
        except ValueError as exc:
            raise SuiteError(f"{path.name}:{lineno}: invalid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise SuiteError(f"{path.name}:{lineno}: each line must be a JSON object, not {_a(_kind(obj))}")
        yield _Line(path.name, lineno, obj)


def _claim(line: _Line, what: str, value: str, seen: dict[str, int]) -> None:
    if value in seen:
        line.fail(f"duplicate {what} {value!r} (first on line {seen[value]})")
    seen[value] = line.lineno


# ----------------------------------------------------------------------------------- tools.jsonl
def _examples(line: _Line, style: str) -> tuple[ToolExample, ...]:
    raw: list[Any] = line.typed("examples", line.obj["examples"], "array")
    examples = []
    for i, example in enumerate(raw):
        where = f"examples[{i}]"
        line.typed(where, example, "object")
        for key in example:
            if key not in ("args", "expected"):
                line.fail(f"unknown key {key!r} in {where}")
        for key in ("args", "expected"):
            if key not in example:
                line.fail(f"missing key {key!r} in {where}")
        args = line.typed(f"{where}.args", example["args"], "array")
        examples.append(ToolExample(tuple(args), example["expected"]))
    if style == "plain" and examples:
        line.fail("a plain-style item shows no examples: examples must be []")
    if style == "docstring" and not 1 <= len(examples) <= 2:
        line.fail(f"a docstring-style item shows one or two examples, not {len(examples)}")
    return tuple(examples)


def _tool_item(line: _Line) -> ToolItem:
    line.check_keys(TOOL_REQUIRED, TOOL_OPTIONAL)
    item_id = line.ident()
    category = line.choice("category", TOOL_CATEGORIES)
    style = line.choice("style", TOOL_STYLES)
    name = line.text("name")
    if not _NAME_RE.fullmatch(name) or keyword.iskeyword(name):
        line.fail(f"name {name!r} must be a public snake_case function name")
    spec = line.text("spec")
    examples = _examples(line, style)
    hidden_tests = line.python("hidden_tests")
    try:
        hidden_checks(hidden_tests)
    except ValueError as exc:
        line.fail(f"hidden_tests: {exc}")
    reference = line.python("reference")
    timeout_s = DEFAULT_TIMEOUT_S
    if "timeout_s" in line.obj:
        timeout_s = float(line.number("timeout_s", line.obj["timeout_s"]))
        if timeout_s <= 0:
            line.fail("timeout_s must be greater than 0")
    return ToolItem(item_id, category, style, name, spec, examples, hidden_tests, reference, timeout_s)


def load_tools(path: str | os.PathLike[str] | None = None) -> list[ToolItem]:
    """Read and validate a tools suite (default: suites/tools.jsonl); SuiteError on the first bad line."""
    source = Path(path) if path is not None else TOOLS_PATH
    items: list[ToolItem] = []
    ids: dict[str, int] = {}
    names: dict[str, int] = {}
    for line in _lines(source):
        item = _tool_item(line)
        _claim(line, "id", item.id, ids)
        _claim(line, "function name", item.name, names)
        items.append(item)
    return items


# ----------------------------------------------------------------------------------- tasks.jsonl
def _answer(line: _Line, compare: str) -> Answer:
    value = line.obj["answer"]
    if compare == "number":
        return line.number("answer", value)
    if compare == "set":
        return line.strings("answer", value, allow_empty=False)
    text = line.text("answer")
    if compare == "date":
        try:
            if not _ISO_RE.fullmatch(text):
                raise ValueError
            date.fromisoformat(text)
        except ValueError:
            line.fail(f"answer {text!r} must be a real date written YYYY-MM-DD")
    return text


def _setup(line: _Line) -> dict[str, Any]:
    """setup: {"memory": [...]} and/or {"documents": [...], "evidence"} or {"web": [...], "evidence"}."""
    if "setup" not in line.obj:
        return {}
    setup: dict[str, Any] = line.typed("setup", line.obj["setup"], "object")
    for key in setup:
        if key not in ("memory", "documents", "web", "evidence"):
            line.fail(f"unknown key {key!r} in setup")
    if not {"memory", "documents", "web"} & set(setup):
        line.fail("missing key 'memory', 'documents' or 'web' in setup")
    out: dict[str, Any] = {}
    if "memory" in setup:
        out["memory"] = line.strings("setup.memory", setup["memory"], allow_empty=False)
    texts: list[str] = []
    for key, fields in (("documents", ("name", "text")), ("web", ("url", "title", "html"))):
        if key not in setup:
            continue
        entries = line.typed(f"setup.{key}", setup[key], "array")
        if not entries:
            line.fail(f"setup.{key} must not be empty")
        rows = []
        for n, entry in enumerate(entries):
            where = f"setup.{key}[{n}]"
            entry = line.typed(where, entry, "object")
            if set(entry) != set(fields):
                line.fail(f"{where} must have exactly the keys {', '.join(fields)}")
            for field_name in fields:
                if not isinstance(entry[field_name], str) or not entry[field_name].strip():
                    line.fail(f"{where}.{field_name} must be a non-empty string")
            if key == "documents" and not entry["name"].lower().endswith(DOCUMENT_SUFFIXES):
                line.fail(f"{where}.name must end in one of {', '.join(DOCUMENT_SUFFIXES)}")
            if key == "web" and not re.match(r"https?://[^/\s]+", entry["url"]):
                line.fail(f"{where}.url must be an http(s) address")
            rows.append(tuple(entry[f] for f in fields))
            texts.append(entry["text"] if key == "documents" else entry["html"])
        out[key] = tuple(rows)
    if texts:
        evidence = setup.get("evidence")
        if not isinstance(evidence, str) or not evidence.strip():
            line.fail("setup.evidence (the words that hold the answer) is required with documents or web")
        holding = sum(evidence in text for text in texts)
        if holding != 1:
            line.fail(f"setup.evidence must occur in exactly one shipped text, found in {holding}")
        out["evidence"] = evidence
    elif "evidence" in setup:
        line.fail("setup.evidence goes with setup.documents or setup.web")
    return out


def _task_item(line: _Line) -> TaskItem:
    line.check_keys(TASK_REQUIRED, TASK_OPTIONAL)
    item_id = line.ident()
    category = line.choice("category", TASK_CATEGORIES)
    task = line.text("task")
    compare = line.choice("compare", COMPARE_RULES)
    answer = _answer(line, compare)
    needs = line.strings("needs", line.obj["needs"], allow_empty=True)
    for need in needs:
        if need not in NEEDS:
            line.fail(f"needs {need!r} is not one of: {', '.join(NEEDS)}")
    tolerance = 0.0
    if "tolerance" in line.obj:
        if compare != "number":
            line.fail("tolerance is only allowed with compare 'number'")
        tolerance = float(line.number("tolerance", line.obj["tolerance"]))
        if tolerance < 0:
            line.fail("tolerance must not be negative")
    choices = None
    if "choices" in line.obj:
        if compare != "set":
            line.fail("choices are only allowed with compare 'set'")
        choices = line.strings("choices", line.obj["choices"], allow_empty=False)
        folded = {choice.casefold() for choice in choices}
        for element in answer if isinstance(answer, tuple) else ():
            if element.casefold() not in folded:
                line.fail(f"answer {element!r} is not among the choices")
    setup = _setup(line)
    for kind in ("memory", "documents", "web"):
        if category == kind and kind not in needs:
            line.fail(f"a {kind} task must list {kind!r} in needs")
        if (kind in needs) != bool(setup.get(kind)):
            line.fail(f"{kind!r} in needs and setup.{kind} go together: list both or neither")
    return TaskItem(item_id, category, task, answer, compare, needs, tolerance, choices, setup.get("memory", ()),
                    setup.get("documents", ()), setup.get("web", ()), setup.get("evidence", ""))


def load_tasks(path: str | os.PathLike[str] | None = None) -> list[TaskItem]:
    """Read and validate a tasks suite (default: suites/tasks.jsonl); SuiteError on the first bad line."""
    source = Path(path) if path is not None else TASKS_PATH
    items: list[TaskItem] = []
    ids: dict[str, int] = {}
    for line in _lines(source):
        item = _task_item(line)
        _claim(line, "id", item.id, ids)
        items.append(item)
    return items


# ----------------------------------------------------------------------------------- answers
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2212": "-"})
# A number: not glued to a word or a decimal point before it; thousands separators only in groups of three.
_NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9.])(-?)((?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)")
_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10,
    "nov": 11, "dec": 12,
}
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + ")"
_ORDINAL = "(?:st|nd|rd|th)?"
_ISO_DATE_RE = re.compile(r"(?<![0-9])([0-9]{4})-([0-9]{2})-([0-9]{2})(?![0-9])")
_MONTH_DAY_YEAR_RE = re.compile(rf"\b{_MONTH}\.?\s+([0-9]{{1,2}}){_ORDINAL},?\s+([0-9]{{4}})\b", re.IGNORECASE)
_DAY_MONTH_YEAR_RE = re.compile(rf"\b([0-9]{{1,2}}){_ORDINAL}\s+(?:of\s+)?{_MONTH}\.?,?\s+([0-9]{{4}})\b",
                                re.IGNORECASE)


def _normalise(text: str) -> str:
    """Case-folded, NFKC, typographic quotes made plain, whitespace runs made single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold().split())


def _mentions(normalised_text: str, phrase: str, *, plural: bool = False) -> bool:
    """True when phrase appears in the (normalised) text as a whole word or phrase; with `plural`, its
    plural counts too ("Mondays" names the choice "Monday")."""
    plural_re = r"(?:s|es)?" if plural and phrase[-1:].isalpha() else ""
    pattern = r"(?<!\w)" + re.escape(_normalise(phrase)) + plural_re + r"(?!\w)"
    return re.search(pattern, normalised_text) is not None


def _show(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:.10g}"


def find_numbers(text: str) -> list[float]:
    """Every number in text, in order: '1,234.5', '-3', '12%' and '42km' all count; ISO dates do not."""
    text = _ISO_DATE_RE.sub(" ", text.translate(_QUOTES))
    return [float(sign + digits.replace(",", "")) for sign, digits in _NUMBER_RE.findall(text)]


def find_dates(text: str) -> list[date]:
    """Every real date in text, in order: '2024-03-05', 'March 5, 2024', '5 March 2024', '5th of Mar 2024'."""
    found: list[tuple[int, int, int, int]] = []  # (position, year, month, day)
    for match in _ISO_DATE_RE.finditer(text):
        year, month, day = match.groups()
        found.append((match.start(), int(year), int(month), int(day)))
    for match in _MONTH_DAY_YEAR_RE.finditer(text):
        month, day, year = match.groups()
        found.append((match.start(), int(year), _MONTHS[month.lower()], int(day)))
    for match in _DAY_MONTH_YEAR_RE.finditer(text):
        day, month, year = match.groups()
        found.append((match.start(), int(year), _MONTHS[month.lower()], int(day)))
    dates = []
    for _, year_number, month_number, day_number in sorted(found):
        try:
            dates.append(date(year_number, month_number, day_number))
        except ValueError:
            continue  # "February 30, 2024" is no date
    return dates


def _check_number(item: TaskItem, text: str) -> tuple[bool, str]:
    if not isinstance(item.answer, (int, float)):
        raise TypeError(f"{item.id}: compare 'number' needs a numeric answer")
    numbers = find_numbers(text)
    if not numbers:
        return False, "no number found in the answer"
    found, expected = numbers[-1], float(item.answer)
    if abs(found - expected) <= item.tolerance + 1e-9 * max(1.0, abs(expected)):
        return True, f"found {_show(found)}"
    wanted = _show(expected) + (f" ± {_show(item.tolerance)}" if item.tolerance else "")
    return False, f"expected {wanted}, found {_show(found)}"


def _check_date(item: TaskItem, text: str) -> tuple[bool, str]:
    dates = find_dates(text)
    if not dates:
        return False, "no date found in the answer"
    found = dates[-1].isoformat()
    if found == item.answer:
        return True, f"found {found}"
    return False, f"expected {item.answer}, found {found}"


def _check_exact(item: TaskItem, text: str) -> tuple[bool, str]:
    if not isinstance(item.answer, str):
        raise TypeError(f"{item.id}: compare 'exact' needs a string answer")
    if _mentions(_normalise(text), item.answer):
        return True, f"found {item.answer!r}"
    return False, f"expected {item.answer!r}, not found in the answer"


def _check_set(item: TaskItem, text: str) -> tuple[bool, str]:
    if not isinstance(item.answer, tuple):
        raise TypeError(f"{item.id}: compare 'set' needs a list answer")
    normalised = _normalise(text)
    missing = [element for element in item.answer if not _mentions(normalised, element, plural=True)]
    expected = {element.casefold() for element in item.answer}
    extra = [choice for choice in item.choices or ()
             if choice.casefold() not in expected and _mentions(normalised, choice, plural=True)]
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if extra:
        problems.append("also names: " + ", ".join(extra))
    if problems:
        return False, "; ".join(problems)
    return True, f"found all {len(item.answer)}: {', '.join(item.answer)}"


_CHECKS = {"number": _check_number, "date": _check_date, "exact": _check_exact, "set": _check_set}


def check_answer(item: TaskItem, text: str) -> tuple[bool, str]:
    """Judge a model's free-text final answer by the item's compare rule: (passed, a short reason).

    number: the last number in the text, within tolerance; date: the last date (ISO or written out);
    exact: the answer as a whole word or phrase; set: every expected element, and no other choice.
    Citation marks such as [1] or [2, 3] are not part of the answer and are read past."""
    return _CHECKS[item.compare](item, _CITATION_RE.sub(" ", text or ""))


# ----------------------------------------------------------------------------------- hidden tests
_SINGLETONS = {"True", "False", "None"}


def _literal_source(node: ast.expr) -> str | None:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return ast.unparse(node)


def hidden_checks(hidden_tests: str) -> tuple[tuple[str, str], ...]:
    """The hidden tests as (expression, expected literal) pairs, in order. Each statement must be
    `assert <expression> == <literal>` (either side) or `assert <expression> is True|False|None`:
    the expression is evaluated in the sandbox and only its value comes back, so the comparison
    happens where the code under test cannot reach. ValueError names the first statement of any
    other shape."""
    pairs: list[tuple[str, str]] = []
    for node in ast.parse(hidden_tests).body:
        shown = ast.unparse(node).splitlines()[0][:120]
        test = node.test if isinstance(node, ast.Assert) and node.msg is None else None
        if not isinstance(test, ast.Compare) or len(test.ops) != 1:
            raise ValueError(f"line {node.lineno} `{shown}` is not `assert <expression> == <literal>`")
        left, op, right = test.left, test.ops[0], test.comparators[0]
        if isinstance(op, ast.Eq):
            for expression, value in ((left, right), (right, left)):
                expected = _literal_source(value)
                if expected is not None and _literal_source(expression) is None:
                    pairs.append((ast.unparse(expression), expected))
                    break
            else:
                raise ValueError(f"line {node.lineno} `{shown}` compares no expression with a literal")
        elif isinstance(op, ast.Is) and isinstance(right, ast.Constant) and repr(right.value) in _SINGLETONS:
            pairs.append((ast.unparse(left), repr(right.value)))
        else:
            raise ValueError(f"line {node.lineno} `{shown}` is not `assert <expression> == <literal>` "
                             "or `is True/False/None`")
    if not pairs:
        raise ValueError("there is no assert")
    return tuple(pairs)


def _truncate(output: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep the head and the tail (where a traceback ends) of long output, limit characters in all."""
    if len(output) <= limit:
        return output
    marker = "\n... [output cut] ...\n"
    head = (limit - len(marker)) // 4
    tail = limit - len(marker) - head
    return output[:head] + marker + output[len(output) - tail:]


def run_hidden_tests(code: str, item: ToolItem, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[bool, str]:
    """Run code followed by the item's hidden tests in a fresh `python3 -I`; (passed, output).

    Stdin is closed, stdout and stderr are captured together and cut to OUTPUT_LIMIT characters, and
    the run is killed after timeout_s seconds. Passing means exit status 0. This is no sandbox: it is
    for code one trusts, such as the suite's own reference solutions."""
    source = f"{code.rstrip()}\n\n\n# ---- hidden tests ({item.id})\n{item.hidden_tests.rstrip()}\n"
    python = sys.executable or "python3"
    with tempfile.TemporaryDirectory(prefix="a4ps-eval-") as scratch:
        script = Path(scratch) / "candidate.py"
        script.write_text(source, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": scratch, "LC_ALL": "C.UTF-8"}
        try:
            proc = subprocess.run([python, "-I", str(script)], cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            partial = exc.output.decode("utf-8", "replace") if isinstance(exc.output, bytes) else ""
            return False, _truncate(f"timed out after {_show(timeout_s)} s\n{partial}")
    output = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0 and not output.strip():
        output = f"exit status {proc.returncode}"
    return proc.returncode == 0, _truncate(output)
