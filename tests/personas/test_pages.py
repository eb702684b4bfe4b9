"""Every page requires login; the dashboard shows the personas and the system log."""
from __future__ import annotations

import pytest
from django.urls import reverse

from personas.events import event_publish
from personas.models import Persona
from personas.persona_state import persona_sync_from_codex

PAGES = ["dashboard", "events", "runs", "models", "forge", "finetunes", "memory", "datasets", "codex", "image"]

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", PAGES)
def test_every_page_redirects_anonymous_users_to_login(client, name):
    url = reverse(name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_for_a_logged_in_user(auth_client, name):
    response = auth_client.get(reverse(name))
    assert response.status_code == 200
    assert b"Log out" in response.content


def test_login_page_logs_in(client, user):
    response = client.post(reverse("login"), {"username": "ada", "password": "correct horse battery"})
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 200
    bad = client.post(reverse("login"), {"username": "ada", "password": "nope"})
    assert b"did not match" in bad.content


def test_dashboard_shows_the_four_personas_with_their_configured_models(auth_client):
    persona_sync_from_codex()
    html = auth_client.get(reverse("dashboard")).content.decode()
    for name, model in [("ALFRED", "gemma2:9b"), ("BRICK", "phi3:mini"), ("ROBIN", "llama3.1:8b"),
                        ("BABS", "mistral:7b")]:
        assert f'id="persona-{name}"' in html
        assert model in html
    assert 'ws-connect="/ws/events/"' in html
    assert "htmx-2.min.js" in html and "hx-ws-2.min.js" in html


def test_seeding_is_idempotent_and_keeps_live_state():
    persona_sync_from_codex()
    brick = Persona.objects.get(name="BRICK")
    brick.state = {"mood": "resolute"}
    brick.save()
    persona_sync_from_codex()
    assert Persona.objects.count() == 4
    assert Persona.objects.get(name="BRICK").state == {"mood": "resolute"}


def test_an_empty_forge_page_says_so_without_inventing_data(auth_client):
    html = auth_client.get(reverse("forge")).content.decode()
    assert "No tools yet" in html and "Nothing forged yet." in html


def test_event_log_page_filters_and_paginates(auth_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(60):
            event_publish(kind="test.tick", source="test", payload={"message": f"tick {i}"})
        event_publish(kind="other.kind", source="test", payload={"message": "odd one"})
    first = auth_client.get(reverse("events")).content.decode()
    assert "odd one" in first and "Page 1 of 2" in first
    second = auth_client.get(reverse("events") + "?page=2").content.decode()
    assert "tick 0" in second and "odd one" not in second
    filtered = auth_client.get(reverse("events") + "?kind=other.kind", HTTP_HX_REQUEST="true").content.decode()
    assert "odd one" in filtered and "tick 5" not in filtered
    assert "<html" not in filtered  # htmx gets only the partial


def test_event_kind_is_validated():
    with pytest.raises(ValueError):
        event_publish(kind="  ", payload={})
