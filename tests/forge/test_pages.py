"""Forge pages: login, the form's errors, a forge from the page, the tool page's buttons, the live socket."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse

from forge.models import ForgeRequest, Tool
from forge.services import forge_request_create, tool_version_create

pytestmark = pytest.mark.django_db(transaction=True)

ADD = 'def combine(a: int, b: int) -> int:\n    """Combine two integers by adding them."""\n    return a + b\n'


@pytest.mark.parametrize("name,args", [("forge", []), ("forge_request", [1]), ("forge_tool", ["combine"])])
def test_pages_need_a_login(client, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_forge_page_shows_the_sandbox_backends_with_reasons(auth_client):
    html = auth_client.get(reverse("forge")).content.decode()
    assert 'id="forge-form"' in html and 'id="sandbox-status"' in html and 'id="tool-list"' in html
    for name in ("docker-runsc", "docker-runc", "bwrap", "local"):
        assert f'id="backend-{name}"' in html
    assert "tools run in:" in html or "no sandbox" in html
    assert "No tools yet" in html


@pytest.mark.parametrize("spec,message", [("   ", "This field is required"), ("x" * 2100, "the limit is 2,000")])
def test_bad_specs_get_a_clear_error_and_keep_the_text(auth_client, spec, message):
    response = auth_client.post(reverse("forge_submit"), {"spec": spec})
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    if spec.strip():
        assert spec in html
    assert not ForgeRequest.objects.exists()


def test_forging_from_the_page_runs_the_loop_and_shows_every_attempt(auth_client, scripted_model, personas_seeded):
    response = auth_client.post(reverse("forge_submit"), {"spec": "add two integers and return the sum"})
    request = ForgeRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("forge_request", args=[request.pk])
    request.refresh_from_db()
    assert request.status == "succeeded" and request.source == "user"
    html = auth_client.get(response["Location"]).content.decode()
    assert f'id="attempt-{request.pk}-1"' in html and f'id="attempt-{request.pk}-2"' in html
    # The first attempt's verdict from the sandbox, call by call.
    assert "FAIL [model] add_two_integers(2, 3) == 5: returned -1" in html
    assert f'ws-connect="/ws/forge/{request.pk}/"' in html
    assert "add_two_integers" in auth_client.get(reverse("forge")).content.decode()


def test_tool_page_buttons_disable_enable_rollback_and_call(auth_client):
    tool_version_create(name="combine", code=ADD, tests="def test_combine():\n    assert combine(1, 2) == 3\n",
                        spec="add")
    tool_version_create(name="combine", code=ADD.replace("a + b", "a * b"), tests="", spec="multiply")
    url = reverse("forge_tool", args=["combine"])
    html = auth_client.get(url).content.decode()
    assert "a * b" in html and 'id="version-1"' in html and 'id="version-2"' in html
    auth_client.post(reverse("forge_tool_rollback", args=["combine"]), {"number": "1"})
    assert Tool.objects.get().current_version.number == 1
    response = auth_client.post(reverse("forge_tool_try", args=["combine"]), {"arguments": '{"a": 20, "b": 22}'})
    assert 'id="call-result"' in response.content.decode() and "Result: <code>42</code>" in response.content.decode()
    response = auth_client.post(reverse("forge_tool_try", args=["combine"]), {"arguments": "[1, 2]"})
    assert response.status_code == 400 and "JSON object" in response.content.decode()
    auth_client.post(reverse("forge_tool_toggle", args=["combine"]), {"enabled": "0"})
    assert Tool.objects.get().enabled is False
    assert "Enable" in auth_client.get(url).content.decode()


def test_tool_buttons_need_csrf(user):
    tool_version_create(name="combine", code=ADD, tests="", spec="add")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(reverse("forge_tool_toggle", args=["combine"]), {"enabled": "0"})
    assert response.status_code == 403 and Tool.objects.get().enabled is True


async def test_request_socket_needs_login_and_replays_attempts(scripted_model, personas_seeded, user):
    from a4ps_site.asgi import application

    anonymous = WebsocketCommunicator(application, "/ws/forge/1/", headers=[(b"origin", b"http://127.0.0.1:8000")])
    connected, code = await anonymous.connect()
    assert not connected
    await anonymous.disconnect()

    from forge.services import forge_request_execute

    def forge() -> int:
        request = forge_request_create(spec="add two integers", enqueue=False)
        return forge_request_execute(request=request).pk

    request_id = await database_sync_to_async(forge)()
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    ws = WebsocketCommunicator(application, f"/ws/forge/{request_id}/",
                               headers=[(b"cookie", cookie), (b"origin", b"http://127.0.0.1:8000")])
    connected, _ = await ws.connect()
    assert connected
    await ws.send_to(text_data='{"resume_after": 1}')
    replayed = [await ws.receive_from(timeout=5) for _ in range(2)]
    assert f'id="attempt-{request_id}-2"' in replayed[0] and f'id="attempt-{request_id}-1"' not in replayed[0]
    assert 'data-status="succeeded"' in replayed[1]
    await ws.disconnect()
