"""A person overrules the forge: register a function whose only failure was BRICK's own wrong
assertion, or judge it with their own tests; and delete a junk tool."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from forge.models import ForgeRequest, Tool
from forge.services import forge_request_create, forge_request_execute, tool_version_create
from personas.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

DAYS = '''```python
from datetime import date


def days_between(a: str, b: str) -> int:
    """Days from date a to date b (ISO strings)."""
    return (date.fromisoformat(b) - date.fromisoformat(a)).days
```'''
WRONG_TESTS = "```python\nassert days_between('2024-04-01', '2024-04-30') == 30\n```"  # it is 29


def _failed_request(scripted_model) -> ForgeRequest:
    scripted_model.rules["forge"] = DAYS
    scripted_model.rules["forge_tests"] = WRONG_TESTS
    request = forge_request_create(spec="days_between(a, b): the days from ISO date a to ISO date b",
                                   enqueue=False)
    request = forge_request_execute(request=request, model=scripted_model)
    assert request.status == ForgeRequest.Status.FAILED, request.error
    return request


def test_a_person_registers_a_right_function_the_forge_refused(auth_client, scripted_model, personas_seeded):
    request = _failed_request(scripted_model)
    page = auth_client.get(reverse("forge_request", args=[request.pk])).content.decode()
    assert "Overrule the forge" in page and "== 30" in page
    url = reverse("forge_request_overrule", args=[request.pk])
    # Their own tests, still wrong: nothing is registered and the text stays in the box.
    bad = auth_client.post(url, {"attempt": "1", "action": "retest",
                                 "tests": "assert days_between('2024-04-01', '2024-04-30') == 31"})
    assert bad.status_code == 400 and "fails these checks" in bad.content.decode()
    assert "== 31" in bad.content.decode() and not Tool.objects.exists()
    empty = auth_client.post(url, {"attempt": "1", "action": "retest", "tests": "print('hi')"})
    assert empty.status_code == 400 and "No test case found" in empty.content.decode()
    # Corrected tests: judged in the sandbox, then registered as the person's decision.
    done = auth_client.post(url, {"attempt": "1", "action": "retest",
                                  "tests": "assert days_between('2024-04-01', '2024-04-30') == 29"}, follow=True)
    assert done.status_code == 200 and "days_between v1 registered" in done.content.decode()
    request.refresh_from_db()
    assert request.status == ForgeRequest.Status.SUCCEEDED and "ada registered attempt 1" in request.error
    assert "== 29" in Tool.objects.get(name="days_between").current_version.tests
    assert Event.objects.filter(kind="tool_created", payload__decided_by="ada").exists()
    again = auth_client.post(url, {"attempt": "1", "action": "accept"})
    assert again.status_code == 400 and "only a failed request can be overruled" in again.content.decode()


def test_register_as_it_is_and_the_forms_need_a_login(auth_client, scripted_model, personas_seeded):
    request = _failed_request(scripted_model)
    url = reverse("forge_request_overrule", args=[request.pk])
    assert Client().post(url, {"attempt": "1", "action": "accept"}).status_code == 302
    assert auth_client.post(url, {"attempt": "7", "action": "accept"}).status_code == 400
    auth_client.post(url, {"attempt": "1", "action": "accept"})
    request.refresh_from_db()
    assert request.status == ForgeRequest.Status.SUCCEEDED and "despite the forge's verdict" in request.error


def test_a_junk_tool_can_be_deleted(auth_client, settings):
    junk = 'def forge_note() -> str:\n    """A fixed note."""\n    return "gave up"\n'
    version = tool_version_create(name="forge_note", code=junk, tests="", spec="junk")
    page = auth_client.get(reverse("forge_tool", args=["forge_note"])).content.decode()
    assert "takes no input" in page and 'id="tool-delete"' in page
    url = reverse("forge_tool_delete", args=["forge_note"])
    assert Client().post(url).status_code == 302 and Tool.objects.exists()
    assert auth_client.get(url).status_code == 405
    done = auth_client.post(url, follow=True).content.decode()
    assert "Tool forge_note deleted" in done
    assert not Tool.objects.exists() and not version.path.exists()
    assert Event.objects.filter(kind="tool_deleted").exists()
