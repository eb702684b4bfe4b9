"""Ollama backend of the ModelManager against a fake Ollama HTTP server."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from personas.inference import (
    CallRecord,
    ModelManager,
    ModelMissing,
    ModelOutputInvalid,
    ModelsConfig,
    OllamaUnavailable,
)
from tests.personas.fake_ollama import FakeOllama

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def fake():
    server = FakeOllama().start()
    yield server
    server.stop()


def _manager(url: str, tmp_path: Path, **overrides: Any) -> tuple[ModelManager, list[CallRecord], list[dict]]:
    calls: list[CallRecord] = []
    statuses: list[dict] = []
    table = {"backend": "ollama", "ollama_host": url, "request_timeout_s": 10, **overrides}
    mm = ModelManager(
        ModelsConfig.from_dict(table), var_dir=tmp_path, on_call=calls.append, on_status=statuses.append
    )
    return mm, calls, statuses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chat_sends_keep_alive_zero_and_maps_persona(fake, tmp_path):
    mm, calls, statuses = _manager(fake.url, tmp_path)
    fake.replies.append({"content": "Thesis: bricks are great."})

    result = mm.chat("brick", [{"role": "user", "content": "Say something"}], max_tokens=16, temperature=0.1)

    body = fake.bodies("/api/chat")[0]
    assert body["model"] == "phi3:mini"
    assert body["keep_alive"] == 0
    assert body["options"] == {"num_predict": 16, "temperature": 0.1}
    assert result.content == "Thesis: bricks are great."
    assert (result.backend, result.model, result.persona) == ("ollama", "phi3:mini", "BRICK")
    assert result.prompt_tokens == 12 and result.completion_tokens == 20
    assert result.tokens_per_s == pytest.approx(40.0)
    assert result.load_ms == pytest.approx(250.0)
    assert len(calls) == 1 and calls[0].ok and calls[0].persona == "BRICK" and calls[0].model == "phi3:mini"
    assert [s["state"] for s in statuses] == ["loading", "loaded", "unloaded"]


def test_a_seed_goes_to_ollama_with_the_sampling_options(fake, tmp_path):
    mm = _manager(fake.url, tmp_path)[0]
    fake.replies.extend([{"content": "one"}, {"content": "two"}])
    mm.chat("brick", [{"role": "user", "content": "Say something"}], temperature=0.8, seed=41)
    mm.chat("brick", [{"role": "user", "content": "Say something"}], temperature=0.8)
    seeded, unseeded = fake.bodies("/api/chat")
    assert seeded["options"] == {"temperature": 0.8, "seed": 41}
    assert unseeded["options"] == {"temperature": 0.8}  # Ollama picks one


def test_keep_alive_override_per_persona(fake, tmp_path):
    fake.models.append("gemma2:9b")
    mm, _, statuses = _manager(fake.url, tmp_path, keep_alive_overrides={"ALFRED": 300})
    mm.chat("ALFRED", [{"role": "user", "content": "hi"}])
    mm.chat("ALFRED", [{"role": "user", "content": "again"}])
    assert [b["keep_alive"] for b in fake.bodies("/api/chat")] == [300, 300]
    # The model stays loaded between the two calls, so only one load is announced.
    assert [s["state"] for s in statuses] == ["loading", "loaded", "loaded"]


def test_tools_serialised_and_tool_calls_parsed(fake, tmp_path):
    mm, _, _ = _manager(fake.url, tmp_path)
    fake.replies.append(
        {"content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    )
    bare_spec = WEATHER_TOOL["function"]  # a bare {name, description, parameters} is accepted too
    result = mm.chat("BRICK", [{"role": "user", "content": "Weather in Paris?"}], tools=[bare_spec])

    sent = fake.bodies("/api/chat")[0]["tools"]
    assert sent == [WEATHER_TOOL]
    assert result.tool_calls == [{"name": "get_weather", "arguments": {"city": "Paris"}}]


def test_tool_call_written_as_text_is_recovered(fake, tmp_path):
    mm, _, _ = _manager(fake.url, tmp_path)
    fake.replies.append(
        {"content": 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'}
    )
    result = mm.chat("BRICK", [{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER_TOOL])
    assert result.tool_calls == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert result.content == "Sure."


def test_streaming_assembles_chunks_and_calls_on_token(fake, tmp_path):
    mm, _, _ = _manager(fake.url, tmp_path)
    fake.replies.append({"content": ["Hel", "lo", " wor", "ld"]})
    tokens: list[str] = []
    result = mm.chat("BRICK", [{"role": "user", "content": "greet"}], on_token=tokens.append)
    assert fake.bodies("/api/chat")[0]["stream"] is True
    assert tokens == ["Hel", "lo", " wor", "ld"]
    assert result.content == "Hello world"
    assert result.completion_tokens == 20


def test_json_schema_sent_as_format_and_parsed(fake, tmp_path):
    mm, _, _ = _manager(fake.url, tmp_path)
    schema = {"type": "object", "properties": {"verdict": {"type": "string"}}, "required": ["verdict"]}
    fake.replies.append({"content": '{"verdict": "agree"}'})
    fake.models.append("llama3.1:8b")
    result = mm.chat("ROBIN", [{"role": "user", "content": "judge"}], json_schema=schema)
    assert fake.bodies("/api/chat")[0]["format"] == schema
    assert result.parsed == {"verdict": "agree"}


def test_junk_instead_of_json_is_model_output_invalid(fake, tmp_path):
    mm, calls, _ = _manager(fake.url, tmp_path)
    fake.replies.append({"content": "I think they agree, mostly."})
    with pytest.raises(ModelOutputInvalid) as err:
        mm.chat("BRICK", [{"role": "user", "content": "judge"}], json_schema={"type": "object"})
    assert "I think they agree" in str(err.value)
    assert calls[-1].ok is False and "JSON" in calls[-1].error


def test_connection_refused_is_ollama_unavailable(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}"
    mm, calls, _ = _manager(url, tmp_path)
    with pytest.raises(OllamaUnavailable) as err:
        mm.chat("BRICK", [{"role": "user", "content": "hi"}])
    message = str(err.value)
    assert url in message and "ollama serve" in message and "OLLAMA_HOST" in message
    assert calls[-1].ok is False
    # Streaming goes through a different client path; it must fail the same way.
    with pytest.raises(OllamaUnavailable):
        mm.chat("BRICK", [{"role": "user", "content": "hi"}], on_token=lambda t: None)


def test_missing_model_is_model_missing_with_pull_hint(fake, tmp_path):
    mm, calls, _ = _manager(fake.url, tmp_path)
    with pytest.raises(ModelMissing) as err:
        mm.chat("BABS", [{"role": "user", "content": "research"}])
    assert "mistral:7b" in str(err.value) and "ollama pull mistral:7b" in str(err.value)
    assert calls[-1].ok is False and calls[-1].model == "mistral:7b"


def test_pull_reports_progress_and_model_appears(fake, tmp_path):
    mm, _, _ = _manager(fake.url, tmp_path)
    assert "mistral:7b" in mm.status()["missing_models"]
    progress: list[dict] = []
    mm.pull("mistral:7b", on_progress=progress.append)
    counted = [(p["completed"], p["total"]) for p in progress if p["total"]]
    assert counted == [(0, 4000), (1000, 4000), (2500, 4000), (4000, 4000)]
    assert progress[-1]["status"] == "success"
    assert "mistral:7b" in [m["name"] for m in mm.list_models()]
    assert "mistral:7b" not in mm.status()["missing_models"]


def test_pull_failure_is_reported(fake, tmp_path):
    mm, _, _ = _manager(fake.url, tmp_path)
    with pytest.raises(ModelMissing):
        mm.pull("nonexistent-model", on_progress=lambda p: None)


def test_status_lists_mapping_missing_models_and_loaded(fake, tmp_path):
    fake.running.append("phi3:mini")
    mm, _, _ = _manager(fake.url, tmp_path)
    st = mm.status()
    assert st["backend"] == "ollama"
    assert st["personas"] == {"ALFRED": "gemma2:9b", "BRICK": "phi3:mini", "ROBIN": "llama3.1:8b", "BABS": "mistral:7b"}
    assert st["loaded_model"] == "phi3:mini:latest" or st["loaded_model"] == "phi3:mini"
    assert sorted(st["missing_models"]) == ["gemma2:9b", "llama3.1:8b", "mistral:7b"]


def test_auto_uses_ollama_when_it_answers(fake, tmp_path):
    mm, _, _ = _manager(fake.url, tmp_path, backend="auto")
    assert mm.backend == "ollama"
    assert fake.url in mm.status()["reason"] and "answered" in mm.status()["reason"]


def test_auto_falls_back_with_reason_when_ollama_is_down(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}"
    mm, _, _ = _manager(url, tmp_path, backend="auto")
    assert mm.backend == "embedded"
    reason = mm.status()["reason"]
    assert url in reason and "connection refused" in reason and "embedded" in reason


def test_embed_uses_embedding_model_and_normalises(fake, tmp_path):
    mm, _, _ = _manager(fake.url, tmp_path)
    vectors = mm.embed(["alpha", "beta"])
    body = fake.bodies("/api/embed")[0]
    assert body["model"] == "nomic-embed-text" and body["input"] == ["alpha", "beta"] and body["keep_alive"] == 0
    assert vectors.shape == (2, 8)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert mm.embedding_dim == 8


def test_model_lock_is_held_during_the_call(fake, tmp_path):
    mm, _, _ = _manager(fake.url, tmp_path)
    lock_path = tmp_path / "locks" / "model.lock"
    seen: list[bool] = []

    def try_lock(_body: dict) -> None:
        fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(False)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            seen.append(True)
        finally:
            os.close(fd)

    fake.on_chat = try_lock
    mm.chat("BRICK", [{"role": "user", "content": "hi"}])
    assert seen == [True]
    try_lock({})  # and released afterwards
    assert seen == [True, False]
