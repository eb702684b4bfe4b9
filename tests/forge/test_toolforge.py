"""The forge loop with a scripted BRICK: real sandbox failures fed back, giving up, static checks."""
from __future__ import annotations

import pytest

from forge.config import ForgeSettings
from forge.models import ForgeAttempt, ForgeRequest, Tool
from forge.registry import registry
from forge.services import forge_request_create, forge_request_execute
from forge.toolforge import extract_code, forge_loop, split_tests, static_check
from personas.models import Event
from tests.personas.scripted import ScriptedModel, sequence

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED = ForgeSettings().allowed_imports

# Each wrong in its own way: a wrong result, then an exception inside the tool.
WRONG_RESULT = """```python
def median_of(values: list[float]) -> float:
    \"\"\"Return the median of a non-empty list of numbers.\"\"\"
    return sorted(values)[len(values) // 2]


def test_median_of():
    assert median_of([3, 1, 2]) == 2
    assert median_of([4, 1, 3, 2]) == 2.5
```"""
RAISES = """```python
import statistics


def median_of(values: list[float]) -> float:
    \"\"\"Return the median of a non-empty list of numbers.\"\"\"
    return statistics.median(values) / len(values[5:])


def test_median_of():
    assert median_of([3, 1, 2]) == 2
```"""
RIGHT = """Here is the tool.
```python
import statistics


def median_of(values: list[float]) -> float:
    \"\"\"Return the median of a non-empty list of numbers.\"\"\"
    return statistics.median(values)


def test_median_of():
    assert median_of([3, 1, 2]) == 2
    assert median_of([4, 1, 3, 2]) == 2.5


test_median_of()
print("All tests passed!")
```"""


def forge_model(*replies: str) -> ScriptedModel:
    return ScriptedModel({"forge": sequence(*replies)})


def test_two_failures_judged_in_the_sandbox_then_success(settings, personas_seeded):
    model = forge_model(WRONG_RESULT, RAISES, RIGHT)
    request = forge_request_create(spec="the median of a list of numbers", enqueue=False)
    request = forge_request_execute(request=request, model=model)

    assert request.status == ForgeRequest.Status.SUCCEEDED, request.error
    attempts = list(ForgeAttempt.objects.filter(request=request).order_by("number"))
    assert [a.passed for a in attempts] == [False, False, True]
    # The judge's findings, call by call: a wrong value, then the tool's own ZeroDivisionError.
    assert "FAIL [model] median_of([4, 1, 3, 2]) == 2.5: returned 3" in attempts[0].stdout
    assert "PASS [model] median_of([3, 1, 2]) == 2: returned 2" in attempts[0].stdout
    assert "ZeroDivisionError" in attempts[1].stdout and "(tool.py line" in attempts[1].stdout
    assert attempts[2].stdout.count("PASS") == 2 and "FAIL" not in attempts[2].stdout
    assert all(a.backend and a.duration_s > 0 for a in attempts)
    # BRICK saw each failing call in the next request, with its own code, and was asked to fix it.
    forge_calls = [c for c in model.calls if c["kind"] == "forge"]
    assert len(forge_calls) == 3
    first_repair = forge_calls[1]["messages"][-1]["content"]
    assert "Fix the code" in first_repair
    assert "median_of([4, 1, 3, 2]) should be 2.5 (your own test case), but it returned 3" in first_repair
    assert "ZeroDivisionError" in forge_calls[2]["messages"][-1]["content"]
    assert "Fix the code" in forge_calls[2]["messages"][-1]["content"]
    assert "return statistics.median(values) / len(values[5:])" in forge_calls[2]["messages"][-2]["content"]

    tool = Tool.objects.get(name="median_of")
    version = tool.current_version
    assert version.number == 1 and request.tool_version == version
    assert "def test_" not in version.code and "print(" not in version.code  # saved without its tests or demo
    assert "def test_median_of" in version.tests and "test_median_of()\n" not in version.tests
    assert "assert median_of([4, 1, 3, 2]) == 2.5" in version.tests
    assert version.path == settings.VAR_DIR / "tools" / "median_of" / "v1.py"
    assert version.path.read_text() == version.code
    assert "median_of" in registry().tools()
    event = Event.objects.get(kind="tool_created")
    assert event.source == "forge" and event.payload["tool"] == "median_of" and "median_of(" in event.payload["message"]


def test_gives_up_after_max_attempts_with_every_attempt_recorded(personas_seeded):
    # The request's own example makes the verdict the person's, not BRICK's: a function that keeps
    # failing it is never registered, however it fares on its own test cases.
    model = forge_model(WRONG_RESULT)
    spec = "the median of a list of numbers; median_of([4, 1, 3, 2]) returns 2.5"
    request = forge_request_create(spec=spec, enqueue=False)
    request = forge_request_execute(request=request, model=model)
    assert request.status == ForgeRequest.Status.FAILED
    assert "gave up after 3 attempt(s)" in request.error and "example" in request.error
    attempts = ForgeAttempt.objects.filter(request=request).order_by("number")
    assert [a.passed for a in attempts] == [False, False, False]
    assert all("FAIL [spec] median_of([4, 1, 3, 2]) == 2.5: returned 3" in a.stdout for a in attempts)
    # A repair that only repeated the same code was replaced by one fresh sample; that sample behaved as
    # the first candidate, so the third was asked afresh (not told the same failure again): no more calls.
    forge_calls = [c for c in model.calls if c["kind"] == "forge"]
    assert len(forge_calls) == 5
    assert ["Fix the code" in c["messages"][-1]["content"] for c in forge_calls] == [False, True, False, False, False]
    assert not Tool.objects.exists()
    assert Event.objects.filter(kind="forge.failed").exists()


def test_the_loop_honours_max_attempts_from_settings():
    reports = []
    outcome = forge_loop("x", model=forge_model("no code at all"), config=ForgeSettings(max_attempts=2),
                         on_attempt=reports.append)
    assert not outcome.ok and [r.number for r in reports] == [1, 2]
    assert reports[0].static_errors == ["the reply holds no ```python code block with the function."]
    assert "gave up after 2 attempt(s)" in outcome.error


@pytest.mark.parametrize("code,problem", [
    ('def a(x: int) -> int:\n    """A."""\n    return x\n\n\ndef b(x: int) -> int:\n    """B."""\n    return x\n',
     "exactly one public function is required, found 2"),
    ('import os\n\n\ndef a(x: int) -> int:\n    """A."""\n    return x\n', "`import os` is not allowed"),
    ('def a(x: int) -> int:\n    """A."""\n    import subprocess\n    return x\n',
     "`import subprocess` is not allowed"),
    ('import math\nTABLE = open("/etc/passwd").read()\n\n\ndef a(x: int) -> int:\n    """A."""\n    return x\n',
     "top-level statement `TABLE = open"),
    ('def a(x: int) -> int:\n    """A."""\n    return x\n\n\na(1)\n', "top-level statement `a(1)`"),
    ('def a(x: int) -> int:\n    return x\n', "needs a docstring"),
    ('def AddThem(x: int) -> int:\n    """A."""\n    return x\n', "must be snake_case"),
    ('def a(x: int) -> int:\n    """A."""\n    return eval("x")\n', "`eval` is not allowed"),
    ('def a(x: int) -> int:\n    """A."""\n    return x.__class__\n', "dunder attribute"),
])
def test_static_checks_reject_bad_code(code, problem):
    check = static_check(code, "def test_a():\n    assert True\n", ALLOWED)
    assert not check.ok
    assert any(problem in e for e in check.errors), check.errors


def test_static_checks_accept_a_function_with_private_helpers():
    code = ('import math\n\n\ndef _sq(x):\n    return x * x\n\n\n'
            'def hyp(a: float, b: float) -> float:\n    """Hypotenuse."""\n    return math.sqrt(_sq(a) + _sq(b))\n')
    check = static_check(code, "def test_hyp():\n    assert hyp(3, 4) == 5\n", ALLOWED)
    assert check.ok and check.name == "hyp"


def test_static_check_failures_never_reach_the_sandbox_and_are_fed_back():
    bad = ('```python\nimport os\n\n\ndef where() -> str:\n    """Cwd."""\n    return os.getcwd()\n\n\n'
           'def test_where():\n    assert where()\n```')
    reports = []
    model = forge_model(bad)
    forge_loop("cwd", model=model, config=ForgeSettings(max_attempts=2), on_attempt=reports.append)
    assert reports[0].exit_code is None and reports[0].backend == ""  # never ran
    assert "`import os` is not allowed" in model.calls[1]["messages"][-1]["content"]


def test_code_split_over_two_blocks_and_a_main_guard_is_understood():
    reply = ('```python\ndef double(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n```\n'
             'And the tests:\n```python\nimport unittest\n\n\nclass TestDouble(unittest.TestCase):\n'
             '    def test_it(self):\n        self.assertEqual(double(2), 4)\n\n\n'
             'if __name__ == "__main__":\n    unittest.main()\n```')
    code, tests = split_tests(extract_code(reply))
    assert code.strip().startswith("def double") and "unittest" not in code
    assert "class TestDouble" in tests and "__main__" not in tests
    outcome = forge_loop("double", model=forge_model(reply), config=ForgeSettings(max_attempts=1))
    assert outcome.ok, outcome.attempts[0].stdout + outcome.attempts[0].stderr
