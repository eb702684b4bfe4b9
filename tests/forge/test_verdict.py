"""The judge's verdict cannot be forged by the code it judges: the sandbox reports what calls returned,
the comparison with the expected values happens outside it. Each attack below made the old in-sandbox
verdict say "passed"."""
from __future__ import annotations

import pytest

from forge.config import ForgeSettings
from forge.models import ForgeRequest, Tool
from forge.selftest import FORGED_TOOL
from forge.services import forge_request_create, forge_request_execute
from forge.toolforge import Check, judge
from tests.personas.scripted import ScriptedModel

pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = [Check("add(1, 2)", "3", "spec"), Check("add(5, 5)", "10", "model")]

# A decorator runs at import: it prints a result line that says every check passed, then exits 0
# before the harness gets a word in.
FORGED_LINE = '''import json, os, sys


def _claim(func):
    row = {"ok": True, "error": ""}
    sys.__stdout__.write("A4PS-RESULT " + json.dumps({"import_error": None, "results": [row, row]}) + "\\n")
    sys.__stdout__.flush()
    os._exit(0)


@_claim
def add(a: int, b: int) -> int:
    """Add."""
    return a - b
'''

# Reads what it is asked and claims a value for each call, as a result line printed after the harness's.
FORGED_AFTER = '''import atexit, json, sys


def _claim():
    calls = json.loads(open("calls.json").read())
    rows = [{"value": "True", "error": ""} for _ in calls]
    sys.__stdout__.write("A4PS-RESULT " + json.dumps({"import_error": None, "results": rows}) + "\\n")


atexit.register(_claim)


def add(a: int, b: int) -> int:
    """Add."""
    return a - b
'''

# A return value that equals anything.
EQUALS_ANYTHING = '''class _Yes:
    def __eq__(self, other):
        return True


def add(a: int, b: int) -> object:
    """Add."""
    return _Yes()
'''

# Patches the harness's own serialiser so that it reports what the checks expect.
PATCHED_HARNESS = '''import sys


def add(a: int, b: int) -> int:
    """Add."""
    return a - b


sys.modules["__main__"].plain = lambda value, depth=0: "3"
'''


def _judge(code: str):
    settings = ForgeSettings()
    return judge(code, CHECKS, backend=settings.backend, limits=settings.limits)


@pytest.mark.parametrize("code", [FORGED_LINE, FORGED_AFTER, EQUALS_ANYTHING])
def test_a_forged_result_line_or_value_never_passes(code):
    verdict = _judge(code)
    assert not any(r["ok"] for r in verdict.results), verdict.results


@pytest.mark.parametrize("code", [PATCHED_HARNESS, FORGED_LINE.replace('"ok": True,', '"value": "3",')])
def test_forged_code_can_only_claim_values_and_the_expected_ones_stay_outside(code):
    verdict = _judge(code)
    # it can make every call report "3": that passes the check expecting 3, never the one expecting 10
    assert [r["ok"] for r in verdict.results] == [True, False]


def test_the_sandbox_is_never_told_the_expected_values(monkeypatch):
    from forge import sandbox

    seen: dict = {}
    real_run = sandbox.run

    def spy(source, *, files, **kwargs):
        seen.update(files)
        return real_run(source, files=files, **kwargs)

    monkeypatch.setattr(sandbox, "run", spy)
    verdict = _judge('def add(a: int, b: int) -> int:\n    """Add."""\n    return a + b\n')
    assert [r["ok"] for r in verdict.results] == [True, True]
    assert seen["calls.json"] == '["add(1, 2)", "add(5, 5)"]'
    assert not any("10" in text for name, text in seen.items() if name != "tool.py")


def test_values_that_are_not_plain_data_fail_with_the_reason():
    code = ('def add(a: int, b: int) -> object:\n    """Add."""\n'
            '    return float("nan") if a == 1 else object()\n')
    verdict = _judge(code)
    assert [r["ok"] for r in verdict.results] == [False, False]
    assert verdict.results[0]["error"] == "returned nan"
    assert "returned a object, not plain data" in verdict.results[1]["error"]


def test_containers_and_infinity_are_read_back_faithfully():
    code = ('def f(x: int) -> object:\n    """F."""\n'
            '    return [(1, "a"), {"k": {2, 3}}, None, float("inf"), b"x", frozenset()][x]\n')
    checks = [Check(f"f({i})", expected, "spec") for i, expected in
              enumerate(['(1, "a")', '{"k": {3, 2}}', "None", "1e999", "b'x'", "set()"])]
    settings = ForgeSettings()
    verdict = judge(code, checks + [Check("f(0)", '[1, "a"]', "spec")], backend=settings.backend,
                    limits=settings.limits)
    assert [r["ok"] for r in verdict.results] == [True] * 6 + [False]  # a tuple is not a list


# The same attack in a form the forge's static checks let through (they are advice, not a wall): the
# self-test's own canary.
FORGED_PAST_THE_CHECKS = FORGED_TOOL


def test_the_forge_does_not_register_a_tool_that_forges_its_verdict(personas_seeded):
    spec = "Write add(a, b) that returns the sum of two integers."
    tests = "def test_add():\n    assert add(1, 2) == 3\n    assert add(5, 5) == 10\n"
    reply = f"```python\n{FORGED_PAST_THE_CHECKS}\n\n{tests}```"
    request = forge_request_create(spec=spec, enqueue=False)
    request = forge_request_execute(request=request, model=ScriptedModel({"forge": reply}))
    assert request.status == ForgeRequest.Status.FAILED
    assert not Tool.objects.filter(name="add").exists()
    attempt = request.attempts.order_by("number").first()
    assert attempt.code.count("A4PS-RESULT") == 1  # the attack went past the static checks to the sandbox
    assert "fails 1 of its test cases" in attempt.error
    assert "add(5, 5) == 10" in request.error
