"""Buttons inside partials that arrive over the websocket work. Such partials are rendered without a
request, so a form in them can carry no CSRF field: htmx submits it (hx-boost / hx-post) with the page's
token in the X-CSRFToken header instead. Each case renders the partial exactly as it is broadcast,
then presses its button the way the browser would."""
from __future__ import annotations

import re

import pytest
from django.template.loader import render_to_string
from django.test import Client

from memory.finetunes.models import FineTuneJob
from memory.finetunes.services import finetune_render
from personas import events, runs
from personas.models import Goal, Run
from personas.selectors import goals_recent, run_queue

pytestmark = pytest.mark.django_db

WINNING = {"tally": {"adapted": 18, "base": 1, "tie": 1, "unjudged": 0}}  # an open gate


@pytest.fixture
def browser_client(user):
    """A logged-in client that enforces CSRF like the real site, with the page's token at hand."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")  # the page load that sets the token cookie (and renders it into hx-headers)
    client.token = client.cookies["csrftoken"].value
    return client


def press(client: Client, html: str, button: str, *, token: bool = True):
    """Submit the form around `button` in a broadcast partial as htmx does, with or without the token."""
    form = next(f for f in re.findall(r"<form\b[^>]*>.*?</form>", html, re.S) if button in f)
    assert "csrfmiddlewaretoken" not in form  # nothing per-session can be in a broadcast
    assert "hx-boost" in form or "hx-post" in form
    action = re.search(r'(?:hx-post|action)="([^"]+)"', form).group(1)
    data = {}
    chosen = re.search(rf'<button[^>]*name="([^"]+)"[^>]*value="([^"]+)"[^>]*>{re.escape(button)}', form)
    if chosen:
        data[chosen.group(1)] = chosen.group(2)
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_BOOSTED": "true"}
    if token:
        headers["HTTP_X_CSRFTOKEN"] = client.token
    return client.post(action, data, **headers)


@pytest.fixture
def queued_runs(monkeypatch, user):
    monkeypatch.setitem(events._subscribers, "run.queued", [])  # no worker: they stay queued
    return [runs.run_submit(task=f"task {i}", user=user) for i in range(2)]


def test_cancel_in_the_live_queue_panel(browser_client, queued_runs):
    html = render_to_string("personas/_run_queue_oob.html", {"queue": run_queue()})
    assert press(browser_client, html, "Cancel", token=False).status_code == 403  # CSRF still guards it
    assert press(browser_client, html, "Cancel").status_code in (200, 302)
    assert Run.objects.get(pk=queued_runs[0].pk).status == Run.Status.CANCELLED


def test_cancel_on_a_live_run_page(browser_client, queued_runs):
    run = queued_runs[1]
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    run.refresh_from_db()
    html = render_to_string("personas/_run_head_oob.html", {"run": run})
    response = press(browser_client, html, "Cancel run")
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"  # a whole page, not a row
    assert Run.objects.get(pk=run.pk).status == Run.Status.CANCELLING


@pytest.mark.parametrize("button, status", [("Run it", Goal.Status.QUEUED), ("Dismiss", Goal.Status.DISMISSED)])
def test_goal_buttons_that_arrived_live(browser_client, monkeypatch, button, status):
    monkeypatch.setitem(events._subscribers, "run.queued", [])
    goal = Goal.objects.create(kind=Goal.Kind.REFLECTION, text="Reflect on recent work.")
    html = render_to_string("personas/_goals.html", {"goals": goals_recent(), "oob": True})
    assert press(browser_client, html, button).status_code == 302
    assert Goal.objects.get(pk=goal.pk).status == status


def test_promote_then_roll_back_on_a_live_fine_tune_page(browser_client, tmp_path):
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"GGUF")
    job = FineTuneJob.objects.create(persona="ROBIN", base_model=str(tmp_path / "base.gguf"), status="succeeded",
                                     gguf_adapter_path=str(adapter), evaluation=WINNING)
    # The partials as the socket pushes them (with the job's promotion gate, open here).
    html = finetune_render(job=job)["status"]
    assert press(browser_client, html, "Promote").status_code == 302
    job.refresh_from_db()
    assert job.promoted
    html = finetune_render(job=job)["row"]
    assert press(browser_client, html, "Roll back").status_code == 302
    assert not FineTuneJob.objects.get(pk=job.pk).promoted


def test_cancel_on_a_live_fine_tune_row(browser_client):
    job = FineTuneJob.objects.create(persona="BRICK", base_model="x", status="running")
    html = render_to_string("memory/finetunes/_status.html", {"job": job, "oob": True})
    assert press(browser_client, html, "Cancel").status_code == 302
    assert FineTuneJob.objects.get(pk=job.pk).status == "cancelling"


def test_a_promoted_fine_tune_shows_on_the_persona_card_and_the_models_page(auth_client, tmp_path, personas_seeded):
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"GGUF")
    job = FineTuneJob.objects.create(persona="ROBIN", base_model=str(tmp_path / "base.gguf"), status="succeeded",
                                     gguf_adapter_path=str(adapter), evaluation=WINNING)
    assert f"fine-tune #{job.pk}" not in auth_client.get("/").content.decode()
    auth_client.post(f"/memory/finetunes/{job.pk}/promote/")
    dashboard = auth_client.get("/").content.decode()
    card = dashboard.split('id="persona-ROBIN"', 1)[1].split("</article>", 1)[0]
    assert f"+ fine-tune #{job.pk}" in card
    models = auth_client.get("/models/").content.decode()
    assert f"+ fine-tune #{job.pk}" in models and f"/memory/finetunes/{job.pk}/" in models
