"""Runs end to end inside Django: submit, execute through the graph, persist steps, cancel, fail, API."""
from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from personas import events, runs
from personas.inference import OllamaUnavailable
from personas.models import Event, Persona, Run, RunStep

pytestmark = pytest.mark.django_db(transaction=True)


def submit(client, task: str, **extra):
    return client.post(reverse("run_submit"), {"task": task}, **extra)


def test_a_submitted_task_runs_through_the_graph_and_every_step_is_kept(auth_client, scripted_model, personas_seeded):
    response = submit(auth_client, "What is 2 + 2?")
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("run_detail", args=[run.pk])
    assert run.status == Run.Status.DONE
    assert run.final_answer == "The answer is 4."
    steps = list(run.steps.order_by("seq"))
    assert [s.seq for s in steps] == list(range(1, len(steps) + 1))
    assert [s.persona for s in steps[:6]] == ["ALFRED", "BRICK", "ROBIN", "BRICK", "ROBIN", "ALFRED"]
    assert steps[5].dissonance is not None and run.max_dissonance == steps[5].dissonance
    assert all(s.prompt_tokens == 10 for s in steps if s.kind in {"thesis", "answer"})
    kinds = list(Event.objects.filter(payload__run=run.pk).values_list("kind", flat=True).order_by("id"))
    assert kinds == ["run.queued", "run.started", "run.done"]
    assert run.codex_version == 1
    assert set(Persona.objects.values_list("state__activity", flat=True)) == {"idle"}
    page = auth_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "The answer is 4." in page and "alfred_synthesis" in page and "graph TD" in page


def test_the_personas_prompts_come_from_the_codex(auth_client, scripted_model, personas_seeded):
    submit(auth_client, "Explain recursion.")
    brick = [c for c in scripted_model.calls if c["persona"] == "BRICK"][0]
    assert "You are BRICK" in brick["messages"][0]["content"]
    assert "Prefer a sound argument to a quick one." in brick["messages"][0]["content"]


@pytest.mark.parametrize("task,message", [("   ", "This field is required"), ("x" * 9000, "the limit is 8,000")])
def test_bad_tasks_get_a_clear_error_and_keep_the_text(auth_client, task, message):
    response = submit(auth_client, task, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    html = response.content.decode()
    assert message in html
    if task.strip():
        assert task in html  # nothing typed is lost
    assert Run.objects.count() == 0


@pytest.fixture
def no_dispatch(monkeypatch):
    """Keep submitted runs queued: the dispatcher is not subscribed to "run.queued"."""
    monkeypatch.setitem(events._subscribers, "run.queued", [])


def test_queued_runs_are_processed_in_order_and_can_be_cancelled(user, scripted_model, personas_seeded, no_dispatch):
    first = runs.run_submit(task="first", user=user)
    second = runs.run_submit(task="second", user=user)
    third = runs.run_submit(task="third", user=user)
    runs.run_cancel(run=second)
    assert Run.objects.get(pk=second.pk).status == Run.Status.CANCELLED
    from personas.tasks import dispatch_runs

    assert dispatch_runs.call_local() == 2
    first.refresh_from_db()
    third.refresh_from_db()
    assert first.status == third.status == Run.Status.DONE
    assert first.started < third.started
    with pytest.raises(ValueError, match="only queued, waiting or running"):
        runs.run_cancel(run=first)


def test_a_running_run_stops_when_cancelled(user, scripted_model, personas_seeded):
    def cancel_then_answer(n):
        runs.run_cancel(run=Run.objects.get())
        return "A long thesis that will be interrupted " * 5

    scripted_model.rules["thesis"] = cancel_then_answer
    run = runs.run_submit(task="Cancel me", user=user)
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert not run.steps.filter(kind="answer").exists()
    assert Event.objects.filter(kind="run.cancelled", payload__run=run.pk).exists()


def test_a_model_error_fails_the_run_with_the_reason_kept(auth_client, scripted_model, personas_seeded):
    def down(n):
        raise OllamaUnavailable("Ollama at http://127.0.0.1:11434 did not answer: connection refused.")

    scripted_model.rules["thesis"] = down
    submit(auth_client, "Anything")
    run = Run.objects.get()
    assert run.status == Run.Status.FAILED
    assert "did not answer" in run.error
    assert run.task == "Anything" and run.steps.filter(kind="thoughts").exists()  # earlier work is kept
    assert "did not answer" in auth_client.get(reverse("run_detail", args=[run.pk])).content.decode()


def test_runs_list_filters_and_pages(auth_client, user, no_dispatch):
    for i in range(30):
        runs.run_submit(task=f"task number {i}", user=user)
    html = auth_client.get(reverse("runs")).content.decode()
    assert "task number 29" in html and "Page 1 of 2" in html
    assert "task number 0" in auth_client.get(reverse("runs") + "?page=2").content.decode()
    done = auth_client.get(reverse("runs") + "?status=done").content.decode()
    assert "No runs match these filters" in done


def test_json_api_with_a_token(user, scripted_model, personas_seeded, capsys):
    call_command("create_api_token", user.username, "script")
    token = capsys.readouterr().out.strip()
    client = Client()
    assert client.post("/api/runs/", {"task": "x"}, content_type="application/json").status_code == 401
    bad = client.post("/api/runs/", "{nope", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    wrong = client.get("/api/runs/", HTTP_AUTHORIZATION="Bearer wrong")
    assert wrong.status_code == 401
    created = client.post("/api/runs/", json.dumps({"task": "What is 2 + 2?"}), content_type="application/json",
                          HTTP_AUTHORIZATION=f"Bearer {token}")
    assert created.status_code == 201
    run_id = created.json()["id"]
    detail = client.get(f"/api/runs/{run_id}/", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert detail["status"] == "done" and detail["final_answer"] == "The answer is 4."
    assert [s["seq"] for s in detail["steps"]] == list(range(1, len(detail["steps"]) + 1))
    too_long = client.post("/api/runs/", json.dumps({"task": "y" * 9000}), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert too_long.status_code == 400 and "limit" in too_long.json()["error"]
    assert client.get("/api/runs/999999/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404


def test_json_api_session_writes_need_csrf(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/runs/").status_code == 200
    response = client.post("/api/runs/", json.dumps({"task": "x"}), content_type="application/json")
    assert response.status_code == 403


@database_sync_to_async
def _cookie(username: str) -> bytes:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password="pw-123456789")
    c = Client()
    c.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={c.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def test_run_socket_streams_steps_and_replays_them(scripted_model, personas_seeded):
    from a4ps_site.asgi import application

    run = await database_sync_to_async(Run.objects.create)(task="What is 2 + 2?")
    path = f"/ws/runs/{run.pk}/"
    anonymous = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://127.0.0.1:8000")])
    assert not (await anonymous.connect())[0]
    cookie = await _cookie("run-watcher")
    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie)]
    missing = WebsocketCommunicator(application, "/ws/runs/999999/", headers=headers)
    assert not (await missing.connect())[0]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    assert (await communicator.connect())[0]

    @database_sync_to_async
    def execute():
        claimed = runs.run_claim_next(worker="test:1", lease_s=60)
        runs.run_execute(run=claimed)

    await execute()
    received = []
    while not await communicator.receive_nothing(timeout=0.2):
        received.append(await communicator.receive_from())
    joined = "".join(received)
    assert 'id="typing"' in joined and "is speaking" in joined  # streamed tokens
    assert joined.count('hx-swap-oob="beforeend"') >= 8  # steps appended
    assert "The answer is 4." in joined and 'data-status="done"' in joined

    await communicator.send_to(text_data=json.dumps({"resume_after": 3}))
    replay = []
    while not await communicator.receive_nothing(timeout=0.3):
        replay.append(await communicator.receive_from())
    count = await database_sync_to_async(RunStep.objects.filter(run=run, seq__gt=3).count)()
    assert len(replay) == count + 1  # the missed steps, then the current header
    assert 'data-seq="4"' in replay[0]
    await communicator.disconnect()


def test_persona_live_state_counts_contributions(user, scripted_model, personas_seeded):
    runs.run_submit(task="What is 2 + 2?", user=user)
    brick = Persona.objects.get(name="BRICK").state
    assert brick["contributions"] == {"thoughts": 1, "thesis": 1}
    assert brick["tokens_generated"] == 10
    assert Persona.objects.get(name="ALFRED").state["last_dissonance"] is not None
    runs.run_submit(task="And 3 + 3?", user=user)
    assert Persona.objects.get(name="BRICK").state["contributions"]["thesis"] == 2
