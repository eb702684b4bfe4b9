"""Eval suites: both files load and cover what they must, every reference passes its hidden tests while a
wrong solution fails them, the loader names the broken line, and check_answer judges by each compare rule."""
from __future__ import annotations

import ast
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from forge.evals.suites import (
    ALLOWED_IMPORTS,
    COMPARE_RULES,
    OUTPUT_LIMIT,
    TASK_CATEGORIES,
    TASKS_PATH,
    TOOL_CATEGORIES,
    TOOL_STYLES,
    TOOLS_PATH,
    SuiteError,
    TaskItem,
    ToolItem,
    check_answer,
    hidden_checks,
    load_tasks,
    load_tools,
    run_hidden_tests,
)

TOOLS = load_tools()
TASKS = load_tasks()


def by_id(item: ToolItem | TaskItem) -> str:
    return item.id


def call_text(name: str, args: tuple[Any, ...]) -> str:
    return f"{name}({', '.join(repr(arg) for arg in args)})"


def public_function(source: str, name: str) -> ast.FunctionDef:
    tree = ast.parse(source)
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    assert len(found) == 1, f"no single top-level def {name} in:\n{source}"
    return found[0]


def imported_modules(tree: ast.AST) -> set[str]:
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    return modules


def task(compare: str, answer: Any, **extra: Any) -> TaskItem:
    return TaskItem(id="t-001", category="logic", task="?", answer=answer, compare=compare, **extra)


# ----------------------------------------------------------------------------------- loading and coverage
def test_both_suites_load_from_their_default_paths():
    assert TOOLS_PATH.name == "tools.jsonl" and TASKS_PATH.name == "tasks.jsonl"
    assert len(TOOLS) >= 64
    assert len(TASKS) >= 44
    assert load_tools(TOOLS_PATH) == TOOLS
    assert load_tasks(str(TASKS_PATH)) == TASKS


def test_tool_items_cover_every_category_and_style():
    categories = Counter(item.category for item in TOOLS)
    styles = Counter(item.style for item in TOOLS)
    assert set(categories) == set(TOOL_CATEGORIES)
    assert all(count >= 8 for count in categories.values()), categories
    assert all(styles[style] >= 18 for style in TOOL_STYLES), styles
    for category in TOOL_CATEGORIES:
        assert {item.style for item in TOOLS if item.category == category} == set(TOOL_STYLES), category


def test_task_items_cover_every_category_and_need():
    categories = Counter(item.category for item in TASKS)
    assert set(categories) == set(TASK_CATEGORIES)
    assert all(count >= 6 for kind, count in categories.items() if kind != "web"), categories
    assert sum("tool" in item.needs for item in TASKS) >= 12
    memory = [item for item in TASKS if item.category == "memory"]
    assert len(memory) >= 6
    assert all("memory" in item.needs and item.setup_memory for item in memory)
    # Answers only a shipped document holds, and answers only a web page holds.
    documents = [item for item in TASKS if item.category == "documents"]
    assert len(documents) >= 15 and all(item.setup_documents and item.evidence for item in documents)
    web = [item for item in TASKS if item.category == "web"]
    assert len(web) >= 5 and all(item.setup_web and item.evidence for item in web)


def test_citation_marks_are_not_read_as_the_answer():
    item = next(i for i in TASKS if i.id == "doc-001")
    assert check_answer(item, "The combination is 3917 [1].") == (True, check_answer(item, "3917")[1])
    assert check_answer(item, "It is in the rules [1].") == (False, "no number found in the answer")


@pytest.mark.parametrize("item", [i for i in TASKS if i.evidence], ids=by_id)
def test_the_evidence_of_a_document_or_web_task_answers_it(item: TaskItem):
    """The shipped words that hold the answer pass the item's own check; a refusal does not."""
    assert check_answer(item, item.evidence)[0], item.id
    assert not check_answer(item, "The document does not say.")[0]
    assert {item.compare for item in TASKS} == set(COMPARE_RULES)


def test_date_tasks_give_fixed_dates():
    for item in TASKS:
        if item.category == "dates":
            assert "today" not in item.task.lower(), item.id


# ----------------------------------------------------------------------------------- tool item shapes
@pytest.mark.parametrize("item", TOOLS, ids=by_id)
def test_spec_names_the_function_and_shows_exactly_its_examples(item: ToolItem):
    params = [arg.arg for arg in public_function(item.reference, item.name).args.args]
    for example in item.examples:
        assert call_text(item.name, example.args) in item.spec
        assert repr(example.expected) in item.spec
    if item.style == "docstring":
        stub = public_function(item.spec, item.name)
        assert [arg.arg for arg in stub.args.args] == params
        docstring = ast.get_docstring(stub) or ""
        assert docstring.count(">>> ") == len(item.examples)
    else:
        assert f"{item.name}({', '.join(params)})" in item.spec
        assert ">>>" not in item.spec
    if item.style == "plain":
        assert item.examples == ()


@pytest.mark.parametrize("item", TOOLS, ids=by_id)
def test_reference_has_the_shape_the_forge_accepts(item: ToolItem):
    tree = ast.parse(item.reference)
    public: list[ast.FunctionDef] = []
    helpers: list[ast.FunctionDef] = []
    for node in tree.body:
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef)), ast.dump(node)[:80]
        if isinstance(node, ast.FunctionDef):
            (helpers if node.name.startswith("_") else public).append(node)
    assert [node.name for node in public] == [item.name]
    assert ast.get_docstring(public[0])
    assert imported_modules(tree) <= set(ALLOWED_IMPORTS)
    if item.style == "helper":
        assert helpers, "a helper-style reference uses a private helper"
    assert len(item.reference.splitlines()) <= 40


@pytest.mark.parametrize("item", TOOLS, ids=by_id)
def test_hidden_tests_are_asserts_on_the_public_function(item: ToolItem):
    tree = ast.parse(item.hidden_tests)
    asserts = [node for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert len(asserts) >= 4
    assert imported_modules(tree) <= set(ALLOWED_IMPORTS)
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert item.name in called
    assert not any(name.startswith("_") for name in called), "hidden tests may not call private helpers"


# ----------------------------------------------------------------------------------- running hidden tests
@pytest.mark.parametrize("item", TOOLS, ids=by_id)
def test_reference_passes_its_examples_and_hidden_tests(item: ToolItem):
    examples = "".join(f"assert {call_text(item.name, example.args)} == {example.expected!r}\n"
                       for example in item.examples)
    passed, output = run_hidden_tests(f"{item.reference}\n{examples}", item, item.timeout_s)
    assert passed, output


@pytest.mark.parametrize("item", TOOLS, ids=by_id)
def test_a_solution_returning_none_fails_the_hidden_tests(item: ToolItem):
    wrong = f"{item.reference}\n\ndef {item.name}(*args, **kwargs):\n    return None\n"
    passed, output = run_hidden_tests(wrong, item, item.timeout_s)
    assert not passed
    assert "Traceback" in output and ("AssertionError" in output or "TypeError" in output)


def test_hidden_checks_read_equality_either_way_round_and_identity_with_singletons():
    tests = ("assert f(1) == [1, 2]\nassert 'x' == g('a', 2)\nassert h() is None\n"
             "assert (lambda d: f(d) is d)([]) is True\n")
    assert hidden_checks(tests) == (("f(1)", "[1, 2]"), ("g('a', 2)", "'x'"), ("h()", "None"),
                                    ("(lambda d: f(d) is d)([])", "True"))


def test_run_hidden_tests_reports_errors_timeouts_and_closed_stdin():
    item = next(item for item in TOOLS if item.name == "count_vowels")
    passed, output = run_hidden_tests("def count_vowels(text):\n    return len(text) // 0\n", item)
    assert not passed and "ZeroDivisionError" in output
    passed, output = run_hidden_tests("while True:\n    pass\n", item, timeout_s=1)
    assert (passed, output.splitlines()[0]) == (False, "timed out after 1 s")
    passed, output = run_hidden_tests("input()\n", item)
    assert not passed and "EOFError" in output


def test_run_hidden_tests_cuts_long_output_but_keeps_the_traceback():
    item = next(item for item in TOOLS if item.name == "count_vowels")
    passed, output = run_hidden_tests("print('x' * 20000)\ndef count_vowels(text):\n    return -1\n", item)
    assert not passed
    assert len(output) <= OUTPUT_LIMIT
    assert "output cut" in output
    assert output.rstrip().endswith("AssertionError")


# ----------------------------------------------------------------------------------- loader errors
def write_lines(path: Path, lines: Sequence[dict[str, Any] | str]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
                    encoding="utf-8")
    return path


def first_tool_lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TOOLS_PATH.read_text(encoding="utf-8").splitlines()[:3]]


def first_task_lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TASKS_PATH.read_text(encoding="utf-8").splitlines()[:3]]


def test_loader_accepts_a_valid_excerpt(tmp_path: Path):
    assert [item.id for item in load_tools(write_lines(tmp_path / "tools.jsonl", first_tool_lines()))] \
        == [item.id for item in TOOLS[:3]]
    assert load_tasks(write_lines(tmp_path / "tasks.jsonl", first_task_lines())) == TASKS[:3]


def test_loader_rejects_an_unknown_key_naming_the_line(tmp_path: Path):
    lines = first_tool_lines()
    lines[1]["difficulty"] = "easy"
    with pytest.raises(SuiteError, match=r"^tools\.jsonl:2: unknown key 'difficulty'$"):
        load_tools(write_lines(tmp_path / "tools.jsonl", lines))
    lines = first_task_lines()
    lines[2]["hint"] = "think"
    with pytest.raises(SuiteError, match=r"^tasks\.jsonl:3: unknown key 'hint'$"):
        load_tasks(write_lines(tmp_path / "tasks.jsonl", lines))


def test_loader_rejects_a_missing_key_naming_the_line(tmp_path: Path):
    lines = first_tool_lines()
    del lines[2]["hidden_tests"]
    with pytest.raises(SuiteError, match=r"^tools\.jsonl:3: missing key 'hidden_tests'$"):
        load_tools(write_lines(tmp_path / "tools.jsonl", lines))
    lines = first_task_lines()
    del lines[0]["needs"]
    with pytest.raises(SuiteError, match=r"^tasks\.jsonl:1: missing key 'needs'$"):
        load_tasks(write_lines(tmp_path / "tasks.jsonl", lines))


def test_loader_rejects_a_duplicate_id_or_function_name(tmp_path: Path):
    lines = first_tool_lines()
    lines[2]["id"] = lines[0]["id"]
    with pytest.raises(SuiteError, match=r"^tools\.jsonl:3: duplicate id 'str-001' \(first on line 1\)$"):
        load_tools(write_lines(tmp_path / "tools.jsonl", lines))
    lines = first_tool_lines()
    lines[1]["name"] = lines[0]["name"]
    with pytest.raises(SuiteError, match=r"^tools\.jsonl:2: duplicate function name 'count_vowels'"):
        load_tools(write_lines(tmp_path / "tools.jsonl", lines))
    lines = first_task_lines()
    lines[1]["id"] = lines[0]["id"]
    with pytest.raises(SuiteError, match=r"^tasks\.jsonl:2: duplicate id 'arith-001'"):
        load_tasks(write_lines(tmp_path / "tasks.jsonl", lines))


def test_loader_rejects_a_bad_json_line(tmp_path: Path):
    lines: list[dict[str, Any] | str] = [*first_tool_lines()]
    lines.insert(1, '{"id": "str-099", "category": ')
    with pytest.raises(SuiteError, match=r"^tools\.jsonl:2: invalid JSON"):
        load_tools(write_lines(tmp_path / "tools.jsonl", lines))
    task_lines: list[dict[str, Any] | str] = [*first_task_lines(), '["not", "an", "object"]']
    with pytest.raises(SuiteError, match=r"^tasks\.jsonl:4: each line must be a JSON object"):
        load_tasks(write_lines(tmp_path / "tasks.jsonl", task_lines))
    task_lines = [first_task_lines()[0], '{"id": "a-002", "id": "a-003"}']
    with pytest.raises(SuiteError, match=r"^tasks\.jsonl:2: invalid JSON: duplicate key 'id'"):
        load_tasks(write_lines(tmp_path / "tasks.jsonl", task_lines))


@pytest.mark.parametrize(("change", "message"), [
    ({"category": "graphs"}, "category 'graphs' is not one of"),
    ({"style": "terse"}, "style 'terse' is not one of"),
    ({"spec": 42}, "spec must be a string, not a number"),
    ({"examples": {}}, "examples must be an array, not an object"),
    ({"id": "STR-1"}, "id 'STR-1' must look like"),
    ({"name": "CountVowels"}, "name 'CountVowels' must be a public snake_case"),
    ({"reference": "def broken(:\n"}, "reference is not valid Python"),
    ({"timeout_s": 0}, "timeout_s must be greater than 0"),
    ({"timeout_s": True}, "timeout_s must be a number, not a boolean"),
    ({"examples": []}, "a docstring-style item shows one or two examples, not 0"),
    ({"hidden_tests": "data = [1]\nassert count_vowels(data) == 0\n"},
     r"hidden_tests: line 1 `data = \[1\]` is not `assert <expression> == <literal>`"),
    ({"hidden_tests": "assert count_vowels('a') > 0\n"}, r"hidden_tests: line 1 .* is not `assert <expression> =="),
    ({"hidden_tests": "assert count_vowels('a') == count_vowels('A')\n"},
     "hidden_tests: line 1 .* compares no expression"),
])
def test_loader_rejects_wrong_types_and_values_in_tools(tmp_path: Path, change: dict[str, Any], message: str):
    lines = first_tool_lines()
    lines[0].update(change)
    with pytest.raises(SuiteError, match="^tools\\.jsonl:1: " + message):
        load_tools(write_lines(tmp_path / "tools.jsonl", lines))


@pytest.mark.parametrize(("change", "message"), [
    ({"compare": "fuzzy"}, "compare 'fuzzy' is not one of"),
    ({"answer": "42"}, "answer must be a number, not a string"),
    ({"needs": ["internet"]}, "needs 'internet' is not one of"),
    ({"compare": "exact", "answer": "x", "tolerance": 0.5}, "tolerance is only allowed with compare 'number'"),
    ({"tolerance": -1}, "tolerance must not be negative"),
    ({"choices": ["a"]}, "choices are only allowed with compare 'set'"),
    ({"compare": "date", "answer": "2024-02-30"}, "answer '2024-02-30' must be a real date"),
    ({"compare": "set", "answer": ["a", "b"], "choices": ["a", "c"]}, "answer 'b' is not among the choices"),
    ({"setup": {"memory": ["A fact."]}}, "'memory' in needs and setup.memory go together"),
    ({"category": "memory"}, "a memory task must list 'memory' in needs"),
    ({"setup": {"notes": []}}, "unknown key 'notes' in setup"),
    ({"needs": ["documents"], "setup": {"documents": [{"name": "a.md", "text": "The code is 42."}]}},
     r"setup.evidence \(the words that hold the answer\) is required"),
    ({"needs": ["documents"], "setup": {"documents": [{"name": "a.md", "text": "The code is 42."}],
                                        "evidence": "The code is 43"}},
     "setup.evidence must occur in exactly one shipped text, found in 0"),
    ({"needs": ["documents"], "setup": {"documents": [{"name": "a.pdf", "text": "x"}], "evidence": "x"}},
     r"setup.documents\[0\].name must end in one of .txt, .md, .html"),
    ({"needs": ["web"], "setup": {"web": [{"url": "ftp://x", "title": "t", "html": "<p>42</p>"}], "evidence": "42"}},
     r"setup.web\[0\].url must be an http\(s\) address"),
    ({"setup": {"documents": [{"name": "a.md", "text": "The code is 42."}], "evidence": "42"}},
     "'documents' in needs and setup.documents go together"),
    ({"category": "web"}, "a web task must list 'web' in needs"),
])
def test_loader_rejects_wrong_types_and_values_in_tasks(tmp_path: Path, change: dict[str, Any], message: str):
    lines = first_task_lines()
    lines[0].update(change)
    with pytest.raises(SuiteError, match="^tasks\\.jsonl:1: " + message):
        load_tasks(write_lines(tmp_path / "tasks.jsonl", lines))


def test_loader_rejects_blank_lines_and_empty_files(tmp_path: Path):
    with pytest.raises(SuiteError, match=r"^tasks\.jsonl:2: blank line"):
        load_tasks(write_lines(tmp_path / "tasks.jsonl", [first_task_lines()[0], "", first_task_lines()[1]]))
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(SuiteError, match=r"^empty\.jsonl: the file holds no items"):
        load_tools(tmp_path / "empty.jsonl")


# ----------------------------------------------------------------------------------- check_answer
@pytest.mark.parametrize(("text", "passed"), [
    ("42", True),
    ("The answer is **42**.", True),
    ("First I got 17, but after checking, the answer is 42.", True),
    ("42.0", True),
    ("The answer is 42, not 41.", False),
    ("41", False),
    ("Answer: 4.2", False),
    ("Q42 is the quarter", False),
])
def test_check_number_takes_the_last_number(text: str, passed: bool):
    assert check_answer(task("number", 42), text)[0] is passed


def test_check_number_reasons_separators_signs_and_tolerance():
    assert check_answer(task("number", 41), "I think 42.") == (False, "expected 41, found 42")
    assert check_answer(task("number", 42), "I do not know.") == (False, "no number found in the answer")
    assert check_answer(task("number", 1234567), "That makes 1,234,567 in total.") == (True, "found 1234567")
    assert check_answer(task("number", 1234567.5), "It is $1,234,567.50.")[0]
    assert check_answer(task("number", 446156511), "48,723 \u00d7 9,157 = 446,156,511")[0]
    assert check_answer(task("number", -3), "It changes by \u22123 degrees.")[0]
    assert check_answer(task("number", -3), "It changes by -3 degrees.")[0]
    assert not check_answer(task("number", -3), "It changes by 3 degrees.")[0]
    assert check_answer(task("number", 12.5), "a rise of 12.5%")[0]
    assert check_answer(task("number", 22.2, tolerance=0.05), "about 22.22°C")[0]
    assert check_answer(task("number", 81.43, tolerance=0.005), "81.4 km/h") \
        == (False, "expected 81.43 ± 0.005, found 81.4")
    assert check_answer(task("number", 87), "87 days lie between 2023-11-15 and 2024-02-10.") == (True, "found 87")
    assert check_answer(task("number", 0.5), "It is .5 of the whole.")[0]


@pytest.mark.parametrize(("text", "passed"), [
    ("Copper Lantern", True),
    ("The codename is **COPPER   LANTERN**.", True),
    ("It's “copper lantern”, I believe.", True),
    ("copper\nlantern", True),
    ("Copper Lanterns", False),
    ("Copper", False),
    ("The codename is COPPERLANTERN.", False),
])
def test_check_exact_finds_a_whole_phrase(text: str, passed: bool):
    assert check_answer(task("exact", "Copper Lantern"), text)[0] is passed


def test_check_exact_reasons():
    assert check_answer(task("exact", "Sunday"), "It was a Sunday.") == (True, "found 'Sunday'")
    assert check_answer(task("exact", "Sunday"), "Sundays are nice.") \
        == (False, "expected 'Sunday', not found in the answer")


@pytest.mark.parametrize(("text", "passed"), [
    ("2024-06-09", True),
    ("100 days after 2024-03-01 is **2024-06-09**.", True),
    ("It is June 9, 2024.", True),
    ("That is Sunday, 9 June 2024.", True),
    ("the 9th of June 2024", True),
    ("Jun. 9th, 2024", True),
    ("June 9 2024", True),
    ("Starting 2024-06-09, the deadline is 2024-06-10.", False),
    ("June 10, 2024", False),
    ("2024-6-9", False),
])
def test_check_date_takes_the_last_date_in_any_common_form(text: str, passed: bool):
    assert check_answer(task("date", "2024-06-09"), text)[0] is passed


def test_check_date_reasons():
    assert check_answer(task("date", "2024-06-09"), "June 10, 2024") == (False, "expected 2024-06-09, found 2024-06-10")
    assert check_answer(task("date", "2024-06-09"), "in June") == (False, "no date found in the answer")
    assert check_answer(task("date", "2024-02-29"), "February 30, 2024 or 2024-02-29") == (True, "found 2024-02-29")


def test_check_set_ignores_order_and_case_but_not_other_choices():
    vendors = task("set", ("Halden", "Morrow", "Vey"))
    assert check_answer(vendors, "Vey, halden and MORROW.") == (True, "found all 3: Halden, Morrow, Vey")
    assert check_answer(vendors, "Halden and Vey") == (False, "missing: Morrow")
    numbers = task("set", ("24", "36", "48"), choices=("18", "24", "30", "36", "40", "48"))
    assert check_answer(numbers, "48, 24 and 36")[0]
    assert check_answer(numbers, "The matching numbers are **36**, **24**, **48**.")[0]
    assert check_answer(numbers, "24, 36, 48 and 18") == (False, "also names: 18")
    assert check_answer(numbers, "24, 36, 40") == (False, "missing: 48; also names: 40")
    assert not check_answer(numbers, "240, 360, 480")[0]


def render(item: TaskItem) -> str:
    """A plausible final answer in prose for the item's own expected answer."""
    if isinstance(item.answer, tuple):
        return "They are " + " and ".join(reversed(item.answer)) + "."
    if item.compare == "number" and isinstance(item.answer, int):
        return f"Working it out gives **{item.answer:,}**."
    return f"The answer is {item.answer}."


@pytest.mark.parametrize("item", TASKS, ids=by_id)
def test_each_task_accepts_its_own_answer(item: TaskItem):
    passed, reason = check_answer(item, render(item))
    assert passed, reason
