"""Scripts forge tools the way the Forge page does: `manage.py forge` and the JSON API."""
from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from forge.models import ForgeRequest, Tool

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = "a function add_two_integers(a, b) that returns the sum of two integers"


@pytest.fixture
def token(user, capsys):
    call_command("create_api_token", user.username, "script")
    return capsys.readouterr().out.strip()


def test_the_forge_command_prints_each_attempt_and_registers_the_tool(scripted_model, personas_seeded, capsys):
    call_command("forge", SPEC)
    out = capsys.readouterr().out
    assert "attempt 1: fails" in out and "attempt 2: passed its checks" in out
    assert "registered add_two_integers v1" in out and "return a + b" in out
    assert Tool.objects.get(name="add_two_integers").current_version.number == 1


def test_the_forge_command_as_json(scripted_model, personas_seeded, capsys):
    call_command("forge", SPEC, "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "succeeded" and data["tool"]["name"] == "add_two_integers"
    assert [a["passed"] for a in data["attempts"]] == [False, True]
    assert "add_two_integers(2, 3) == 5" in data["attempts"][0]["judge"]


def test_the_forge_command_refuses_an_empty_spec_and_reports_a_failure(scripted_model, personas_seeded):
    with pytest.raises(CommandError, match="The spec is empty"):
        call_command("forge", "   ")
    scripted_model.rules["forge"] = "I cannot write code today."
    with pytest.raises(CommandError, match="could not build this tool"):
        call_command("forge", SPEC)
    assert ForgeRequest.objects.filter(status="failed").count() == 1


def test_the_forge_command_refuses_when_the_models_broker_is_down(tmp_path, personas_seeded):
    from types import SimpleNamespace

    from personas.inference.lock import BrokerModelLock
    from personas.llm import set_model_manager

    # The product's manager shares the model through the broker; here nothing answers on its socket.
    set_model_manager(SimpleNamespace(lock=BrokerModelLock(f"unix://{tmp_path / 'broker.sock'}")))
    try:
        with pytest.raises(CommandError, match="The product is not running.*No forge request was recorded"):
            call_command("forge", SPEC)
    finally:
        set_model_manager(None)
    assert not ForgeRequest.objects.exists()


def test_the_api_queues_a_request_and_reports_status_attempts_and_tool(scripted_model, personas_seeded, token):
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    created = client.post("/api/forge/", json.dumps({"spec": SPEC}), content_type="application/json", **auth)
    assert created.status_code == 201
    request_id = created.json()["id"]
    # The worker (immediate in tests) has forged it by now.
    data = client.get(f"/api/forge/{request_id}/", **auth).json()
    assert data["status"] == "succeeded" and data["tool"]["name"] == "add_two_integers"
    assert len(data["attempts"]) == 2 and data["attempts"][-1]["passed"] is True
    listing = client.get("/api/forge/", **auth).json()
    assert [r["id"] for r in listing["requests"]] == [request_id]


def test_the_api_rejects_bad_input_with_json_errors(token, personas_seeded):
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert client.get("/api/forge/").status_code == 401
    assert client.post("/api/forge/", "{nope", content_type="application/json", **auth).json()["error"] == \
        "The body is not valid JSON."
    bad = client.post("/api/forge/", json.dumps({"spec": 3}), content_type="application/json", **auth)
    assert bad.status_code == 400 and "spec" in bad.json()["error"]
    empty = client.post("/api/forge/", json.dumps({"spec": ""}), content_type="application/json", **auth)
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    assert client.get("/api/forge/999/", **auth).status_code == 404
    assert client.delete("/api/forge/1/", **auth).status_code == 405
    assert not ForgeRequest.objects.exists()


def test_the_apis_refuse_nul_characters_and_oversized_bodies_with_json(token, personas_seeded):
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    for url, field in (("/api/runs/", "task"), ("/api/forge/", "spec")):
        nul = client.post(url, json.dumps({field: "add\x00 two"}), content_type="application/json", **auth)
        assert nul.status_code == 400 and "NUL" in nul.json()["error"]
        huge = client.post(url, json.dumps({field: "x" * 3_000_000}), content_type="application/json", **auth)
        assert huge.status_code == 413 and huge["Content-Type"] == "application/json"
        assert "larger than" in huge.json()["error"]
    assert not ForgeRequest.objects.exists()
