"""BRICK asks for a tool mid-run: the forge builds it, BRICK's next call has it bound and calls it."""
from __future__ import annotations

import pytest

from forge.models import ForgeAttempt, ForgeRequest, Tool, ToolCall
from personas import runs
from personas.models import Event, Run, RunStep
from personas.ports import ports
from tests.personas.scripted import sequence

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = "add_two_integers(a, b) returns the sum of two integers, e.g. add_two_integers(2, 3) == 5"


def test_tool_required_forges_a_tool_that_the_next_brick_call_has_bound_and_uses(scripted_model, personas_seeded):
    scripted_model.rules["thesis"] = sequence(
        "I need exact arithmetic here.\nTOOL_REQUIRED: " + SPEC,
        {"tool_calls": [{"name": "add_two_integers", "arguments": {"a": 1234, "b": 4321}}]},
        "With the tool: 1234 + 4321 = 5555.",
    )
    run = runs.run_submit(task="What is 1234 + 4321?")
    run.refresh_from_db()
    assert run.status == Run.Status.DONE, run.error

    request = ForgeRequest.objects.get()
    assert request.source == "graph" and request.run_id == run.pk and request.status == "succeeded", request.error
    # The default scripted BRICK gets it wrong once; the sandbox's failure goes back and it is fixed.
    assert list(ForgeAttempt.objects.filter(request=request).values_list("passed", flat=True)) == [False, True]
    tool = Tool.objects.get(name="add_two_integers")
    assert tool.current_version.source_run_id == run.pk

    thesis_calls = [c for c in scripted_model.calls if c["kind"] == "thesis"]
    assert thesis_calls[0]["tools"] is None  # nothing forged yet
    bound = [t["function"]["name"] for t in thesis_calls[1]["tools"]]
    assert bound == ["add_two_integers"]
    assert thesis_calls[1]["tools"][0]["function"]["parameters"]["required"] == ["a", "b"]
    assert "is now available to you" in thesis_calls[1]["messages"][-1]["content"]

    call = ToolCall.objects.get()
    assert call.ok and call.result == 5555 and call.run_id == run.pk and call.backend
    kinds = list(RunStep.objects.filter(run=run).order_by("seq").values_list("kind", flat=True))
    assert kinds[3:6] == ["thesis", "tool_request", "tool_call"]
    assert RunStep.objects.get(run=run, kind="tool_call").data["output"] == 5555
    assert Event.objects.filter(kind="tool_created", payload__run=run.pk).exists()


def test_a_forge_that_fails_tells_brick_so_and_the_run_still_finishes(scripted_model, personas_seeded):
    scripted_model.rules["thesis"] = sequence(
        "TOOL_REQUIRED: impossible(n) returns the largest prime number below n, e.g. impossible(10) == 7",
        "Reasoned without it.")
    scripted_model.rules["forge"] = "I cannot write that."
    run = runs.run_submit(task="Do the impossible.")
    run.refresh_from_db()
    assert run.status == Run.Status.DONE
    assert ForgeRequest.objects.get().status == "failed"
    step = RunStep.objects.get(run=run, kind="tool_request")
    assert step.data["status"] == "failed" and "could not build this tool" in step.content
    assert ports().tool_schemas() == []
