"""The live tool registry: schemas from signatures, reload on change, disable/rollback, sandboxed calls."""
from __future__ import annotations

import os

import pytest

from forge.models import Tool, ToolCall
from forge.registry import ToolRegistry, registry, schema_from_source, standings
from forge.services import tool_call, tool_rollback, tool_set_enabled, tool_version_create

pytestmark = pytest.mark.django_db(transaction=True)

ADD = 'def combine(a: int, b: int) -> int:\n    """Combine two integers by adding them."""\n    return a + b\n'
MUL = 'def combine(a: int, b: int) -> int:\n    """Combine two integers by multiplying them."""\n    return a * b\n'


def test_schema_comes_from_the_signature_hints_defaults_and_docstring():
    code = '''from typing import Literal, Optional


def word_stats(text: str, top: int = 3, *, ignore: Optional[list[str]] = None,
               mode: Literal["count", "share"] = "count", weights: dict[str, float] | None = None) -> dict[str, int]:
    """Count the most common words in a text.

    Args:
        text: The text to read.
        top (int): How many words to return.
        ignore: Words to skip.
    """
    return {}
'''
    schema = schema_from_source(code)
    fn = schema["function"]
    assert schema["type"] == "function" and fn["name"] == "word_stats"
    assert fn["description"].startswith("Count the most common words in a text.")
    params = fn["parameters"]
    assert params["required"] == ["text"] and params["additionalProperties"] is False
    assert params["properties"]["text"] == {"type": "string", "description": "The text to read."}
    assert params["properties"]["top"] == {"type": "integer", "description": "How many words to return.", "default": 3}
    assert params["properties"]["ignore"]["anyOf"] == [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]
    assert params["properties"]["ignore"]["description"] == "Words to skip."
    assert params["properties"]["mode"] == {"enum": ["count", "share"], "default": "count"}
    assert params["properties"]["weights"]["anyOf"][0] == {"type": "object", "additionalProperties": {"type": "number"}}


def test_a_new_version_rollback_and_disable_change_what_every_process_sees():
    other_process = ToolRegistry()  # its own cache, like a second worker
    assert other_process.schemas() == []
    tool_version_create(name="combine", code=ADD, tests="", spec="add")
    assert [s["function"]["name"] for s in other_process.schemas()] == ["combine"]
    assert tool_call(name="combine", arguments={"a": 6, "b": 7}).result == 13

    v2 = tool_version_create(name="combine", code=MUL, tests="", spec="multiply")
    assert v2.number == 2 and v2.path.read_text() == MUL
    assert other_process.get("combine").number == 2
    assert "multiplying" in other_process.schemas()[0]["function"]["description"]
    assert tool_call(name="combine", arguments={"a": 6, "b": 7}).result == 42

    tool = Tool.objects.get(name="combine")
    tool_rollback(tool=tool, number=1)
    assert other_process.get("combine").number == 1
    assert tool_call(name="combine", arguments={"a": 6, "b": 7}).result == 13
    with pytest.raises(ValueError, match="already the current one"):
        tool_rollback(tool=tool, number=1)
    with pytest.raises(ValueError, match="has no version 9"):
        tool_rollback(tool=tool, number=9)

    tool_set_enabled(tool=tool, enabled=False)
    assert other_process.schemas() == [] and registry().schemas() == []
    assert tool_call(name="combine", arguments={"a": 1, "b": 1}) is None
    tool_set_enabled(tool=tool, enabled=True)
    assert [s["function"]["name"] for s in other_process.schemas()] == ["combine"]
    assert ToolCall.objects.filter(ok=True).count() == 3


def test_a_missing_file_is_restored_from_the_database(settings):
    version = tool_version_create(name="combine", code=ADD, tests="", spec="add")
    version.path.unlink()
    fresh = ToolRegistry()
    assert fresh.get("combine").code == ADD and version.path.read_text() == ADD


def test_a_tool_call_runs_in_the_sandbox_not_in_this_process(monkeypatch, tmp_path):
    # Registered directly (past the forge's static checks) to show the sandbox itself contains it.
    code = '''import os


def probe(target: str) -> dict:
    """Report what the tool can see and try to write outside its scratch directory."""
    seen = {"secret": os.environ.get("A4PS_FORGE_CANARY"), "pid": os.getpid()}
    try:
        with open(target, "w") as fh:
            fh.write("escaped")
        seen["wrote"] = True
    except OSError as exc:
        seen["wrote"] = type(exc).__name__
    return seen
'''
    monkeypatch.setenv("A4PS_FORGE_CANARY", "host-secret")
    target = tmp_path / "escaped.txt"
    os.chmod(tmp_path, 0o777)  # only the sandbox, not file permissions, may stop the write
    tool_version_create(name="probe", code=code, tests="", spec="probe")
    call = tool_call(name="probe", arguments={"target": str(target)})
    assert call.ok, call.error
    assert call.result["secret"] is None  # the host's environment is not there
    assert call.result["pid"] != os.getpid()
    assert call.result["wrote"] is not True and not target.exists()
    assert call.backend and call.duration_s > 0


def test_bad_arguments_and_failing_tools_give_clear_errors():
    tool_version_create(name="combine", code=ADD, tests="", spec="add")
    call = tool_call(name="combine", arguments={"a": 1, "c": 2})
    assert not call.ok and "missing argument(s): b" in call.error and "unknown argument(s): c" in call.error
    call = tool_call(name="combine", arguments={"a": 1, "b": "x"})
    assert not call.ok and call.error == 'argument b must be an integer, got "x"'
    assert call.backend == ""  # refused before the sandbox ran
    assert tool_call(name="nope", arguments={}) is None


def test_arguments_are_checked_against_the_declared_types_before_the_sandbox_runs():
    tool_version_create(name="combine", code=ADD, tests="", spec="add")
    # Strings for integers would concatenate ("2" + "3" == "23"): refused, with what was expected.
    call = tool_call(name="combine", arguments={"a": "2", "b": "3"})
    assert not call.ok and "argument a must be an integer" in call.error and "argument b" in call.error
    assert not tool_call(name="combine", arguments={"a": True, "b": 1}).ok  # JSON true is not a number
    assert tool_call(name="combine", arguments={"a": 2, "b": 3}).result == 5
    code = ('def total(values: list[float], scale: float = 1.0) -> float:\n    """Sum times scale."""\n'
            '    return sum(values) * scale\n')
    tool_version_create(name="total", code=code, tests="", spec="sum")
    assert tool_call(name="total", arguments={"values": [1, 2.5], "scale": 2}).result == 7.0  # ints are numbers
    bad = tool_call(name="total", arguments={"values": [1, "2"]})
    assert not bad.ok and bad.error == 'argument values must be a list of numbers, got [1, "2"]'


def test_a_tool_that_takes_no_input_is_listed_but_never_bound():
    junk = 'def forge_note() -> str:\n    """Say the forge could not build the tool."""\n    return "gave up"\n'
    tool_version_create(name="forge_note", code=junk, tests="", spec="junk")
    tool_version_create(name="combine", code=ADD, tests="", spec="add")
    assert [s["function"]["name"] for s in registry().schemas()] == ["combine"]
    assert Tool.objects.filter(name="forge_note").exists()  # still on the Forge page, to delete


def test_the_forge_refuses_a_function_without_inputs():
    from forge.toolforge import static_check

    check = static_check('def forge_note() -> str:\n    """A fixed note."""\n    return "gave up"\n', "", ())
    assert not check.ok and any("takes no input" in e for e in check.errors)
    assert static_check(ADD, "", ()).ok


def test_a_tool_that_ignores_its_input_is_not_offered():
    echo = ('def forge_failure(spec: str) -> str:\n    """Say the forge could not build a tool."""\n'
            '    return "The forge could not build this tool: gave up after 3 attempt(s)"\n')
    tool_version_create(name="forge_failure", code=echo, tests="", spec="junk")
    tool_version_create(name="combine", code=ADD, tests="", spec="add")
    assert [s["function"]["name"] for s in registry().schemas()] == ["combine"]
    assert "ignores its input" in standings(registry().tools())["forge_failure"]


def test_a_tool_no_model_calls_in_five_runs_sits_idle_until_offered_again(django_user_model):
    from django.utils import timezone

    from forge.services import tool_offer_again
    from personas.models import Run

    version = tool_version_create(name="combine", code=ADD, tests="", spec="add")

    def finished_run(source=Run.Source.ARCHITECT) -> Run:
        return Run.objects.create(task="t", status=Run.Status.DONE, finished=timezone.now(), source=source)

    for _ in range(4):
        finished_run()
    finished_run(source=Run.Source.EVAL)  # eval runs do not count
    Run.objects.create(task="t", status=Run.Status.FAILED, finished=timezone.now())  # nor failed ones
    assert [s["function"]["name"] for s in registry().schemas()] == ["combine"]
    fifth = finished_run()
    assert registry().schemas() == []
    assert "never called in the 5+ runs" in standings(registry().tools())["combine"]
    # A call by a model during a run keeps it offered; a call from its page does not count.
    ToolCall.objects.create(tool_version=version, arguments={"a": 1, "b": 2}, result=3, ok=True)
    assert registry().schemas() == []
    ToolCall.objects.create(tool_version=version, arguments={"a": 1, "b": 2}, result=3, ok=True, run=fifth)
    assert [s["function"]["name"] for s in registry().schemas()] == ["combine"]
    ToolCall.objects.all().delete()
    assert registry().schemas() == []
    tool_offer_again(tool=Tool.objects.get(name="combine"))
    assert [s["function"]["name"] for s in registry().schemas()] == ["combine"]


def test_the_forge_page_says_which_tools_are_not_offered_and_offers_one_again(auth_client, settings, config_dir):
    from django.test import Client
    from django.urls import reverse

    path = config_dir / "settings.toml"
    path.write_text(path.read_text().replace("idle_after_runs = 5", "idle_after_runs = 1"))
    from django.utils import timezone

    from personas.models import Run

    tool_version_create(name="combine", code=ADD, tests="", spec="add")
    Run.objects.create(task="t", status=Run.Status.DONE, finished=timezone.now())
    home = auth_client.get(reverse("forge")).content.decode()
    assert "never called in the 1+ runs" in home
    page = auth_client.get(reverse("forge_tool", args=["combine"])).content.decode()
    assert "Not offered to BRICK: never called" in page and 'id="tool-offer"' in page
    url = reverse("forge_tool_offer", args=["combine"])
    assert Client().post(url).status_code == 302 and registry().schemas() == []  # login first
    done = auth_client.post(url, follow=True).content.decode()
    assert "offered to BRICK again" in done and 'id="tool-left-out"' not in done
    assert [s["function"]["name"] for s in registry().schemas()] == ["combine"]
    assert ">yes<" in auth_client.get(reverse("forge")).content.decode()
