"""Embedded backend on the real packaged Qwen2.5-Coder-0.5B GGUF and the real MiniLM embeddings."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from personas.inference import CallRecord, EmbeddedModelError, ModelManager, ModelsConfig
from personas.inference.embedded_backend import (
    PACKAGED_GGUF_NAME,
    PACKAGED_GGUF_SHA256,
    ensure_packaged_gguf,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _dead_host() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One manager (one model load) for the whole module; Ollama is down so auto picks embedded."""
    var_dir = tmp_path_factory.mktemp("var")
    calls: list[CallRecord] = []
    statuses: list[dict] = []
    config = ModelsConfig.from_dict(
        {"backend": "auto", "ollama_host": _dead_host(), "embedded": {"n_ctx": 2048, "max_tokens": 96}}
    )
    mm = ModelManager(config, var_dir=var_dir, on_call=calls.append, on_status=statuses.append)
    yield mm, calls, statuses, var_dir
    mm.close()


def test_auto_falls_back_to_embedded_and_generates_real_text(session):
    mm, calls, statuses, var_dir = session
    result = mm.chat(
        "brick", [{"role": "user", "content": "Name the three primary colors of light."}], max_tokens=32, temperature=0
    )
    assert result.backend == "embedded"
    assert result.model == PACKAGED_GGUF_NAME and result.persona == "BRICK"
    assert len(result.content.strip()) > 5
    assert result.completion_tokens > 0 and result.prompt_tokens > 0 and result.tokens_per_s > 0
    assert calls[-1].ok and calls[-1].backend == "embedded" and calls[-1].completion_tokens == result.completion_tokens
    assert "loaded" in [s["state"] for s in statuses]
    assert (var_dir / "models" / PACKAGED_GGUF_NAME).stat().st_size == 491_400_064
    st = mm.status()
    assert st["backend"] == "embedded" and "did not answer" in st["reason"]
    assert st["loaded_model"] == PACKAGED_GGUF_NAME


def test_tool_call_is_parsed_for_a_prompt_that_needs_the_tool(session):
    mm = session[0]
    result = mm.chat(
        "ALFRED",
        [
            {"role": "system", "content": "You are a helpful assistant. Call a tool when it can answer."},
            {"role": "user", "content": "What is the weather in Paris right now?"},
        ],
        tools=[WEATHER_TOOL],
        max_tokens=64,
        temperature=0,
    )
    assert result.tool_calls, f"no tool call parsed from {result.content!r}"
    assert result.tool_calls[0]["name"] == "get_weather"
    assert "paris" in result.tool_calls[0]["arguments"]["city"].lower()


def test_json_schema_output_is_valid(session):
    mm = session[0]
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    result = mm.chat(
        "ROBIN",
        [{"role": "user", "content": "Describe a person called Ann who is 31 years old."}],
        json_schema=schema,
        max_tokens=48,
    )
    data = json.loads(result.content)
    assert set(data) == {"name", "age"}
    assert isinstance(data["name"], str) and isinstance(data["age"], int) and not isinstance(data["age"], bool)
    assert result.parsed == data


def test_streaming_pieces_join_to_content(session):
    mm = session[0]
    pieces: list[str] = []
    result = mm.chat(
        "BABS", [{"role": "user", "content": "Count from one to five in words."}],
        on_token=pieces.append, max_tokens=32, temperature=0,
    )
    assert len(pieces) > 1
    assert "".join(pieces) == result.content
    assert result.content.strip()


def test_a_seeded_sample_is_drawn_again_by_its_seed(session):
    mm = session[0]
    ask = [{"role": "user", "content": "Invent a name for a small red boat."}]

    def draw(seed: int) -> str:
        return mm.chat("BRICK", ask, max_tokens=16, temperature=1.5, seed=seed).content

    first = draw(7)
    other = draw(8)
    assert draw(7) == first  # again, after another request in between
    assert other != first


def test_llama_server_is_locked_down(session):
    """The binding's server listens; nothing without the key may use it, and no TCP port is opened."""
    mm = session[0]
    mm.chat("BRICK", [{"role": "user", "content": "hi"}], max_tokens=4)
    sock_path = mm._embedded_backend().socket_path
    assert sock_path and os.stat(os.path.dirname(sock_path)).st_mode & 0o077 == 0

    def request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None):
        conn = http.client.HTTPConnection("localhost", timeout=10)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.connect(sock_path)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        conn.close()
        return out

    chat_body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).encode()
    # The server is up (health is public by design) ...
    assert request("GET", "/health")[0] == 200
    # ... but refuses work without the key, and with a wrong one, including a browser-style request.
    status, headers, _ = request("POST", "/v1/chat/completions", {"Content-Type": "application/json"}, chat_body)
    assert status == 401
    status, headers, _ = request(
        "POST", "/v1/chat/completions",
        {"Content-Type": "application/json", "Authorization": "Bearer guess", "Origin": "https://evil.example"},
        chat_body,
    )
    assert status == 401
    assert headers.get("access-control-allow-origin", "") in ("", None)
    assert request("GET", "/v1/models")[0] == 401
    for disabled in ("/slots", "/metrics", "/props"):
        assert request("GET", disabled)[0] != 200

    # No TCP listener belongs to this process.
    my_inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.islink(f"/proc/self/fd/{fd}") else ""
        if target.startswith("socket:["):
            my_inodes.add(target[8:-1])
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            cols = line.split()
            assert not (cols[3] == "0A" and cols[9] in my_inodes), f"listening TCP socket found: {line}"


def test_embeddings_are_384d_and_semantic(session):
    mm = session[0]
    vectors = mm.embed(
        [
            "The cat sat on the mat.",
            "A cat was sitting on the rug.",
            "Quarterly revenue grew by twelve percent.",
        ]
    )
    assert mm.embedding_dim == 384
    assert np.asarray(vectors).shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    paraphrase = float(vectors[0] @ vectors[1])
    unrelated = float(vectors[0] @ vectors[2])
    assert paraphrase > unrelated + 0.2


def test_corrupted_gguf_is_rejected_with_expected_and_actual_hash(session, tmp_path):
    good = session[3] / "models" / PACKAGED_GGUF_NAME
    models = tmp_path / "models"
    models.mkdir()
    bad = models / PACKAGED_GGUF_NAME
    shutil.copyfile(good, bad)
    with open(bad, "r+b") as f:
        f.seek(100_000_000)
        byte = f.read(1)
        f.seek(100_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EmbeddedModelError) as err:
        ensure_packaged_gguf(models)
    message = str(err.value)
    assert PACKAGED_GGUF_SHA256 in message and str(bad) in message and "got" in message


def test_truncated_gguf_and_missing_user_gguf_are_clear_errors(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / PACKAGED_GGUF_NAME).write_bytes(b"GGUF" + b"\0" * 1000)
    with pytest.raises(EmbeddedModelError) as err:
        ensure_packaged_gguf(models)
    assert "491,400,064" in str(err.value)

    config = ModelsConfig.from_dict({"backend": "embedded", "embedded": {"gguf_path": str(tmp_path / "nope.gguf")}})
    mm = ModelManager(config, var_dir=tmp_path)
    with pytest.raises(EmbeddedModelError) as err:
        mm.chat("BRICK", [{"role": "user", "content": "hi"}])
    assert "nope.gguf" in str(err.value) and "does not exist" in str(err.value)


def test_verification_is_cached_in_a_sidecar(session):
    path = Path(session[3]) / "models" / PACKAGED_GGUF_NAME
    sidecar = path.with_name(path.name + ".verified.json")
    data = json.loads(sidecar.read_text())
    assert data["sha256"] == PACKAGED_GGUF_SHA256 and data["size"] == path.stat().st_size


@pytest.mark.parametrize("key", ["qwen2.5-coder-1.5b", "smollm2-135m"])
def test_the_other_packaged_models_assemble_to_their_recorded_hash_and_answer(key, tmp_path):
    """The lineup's other models, installed from requirements-models.txt: assembled, verified, loaded."""
    from personas.inference.packaged import PACKAGED_MODELS

    model = PACKAGED_MODELS[key]
    if not model.installed():
        pytest.skip(f"{model.pip} is not installed (requirements-models.txt)")
    config = ModelsConfig.from_dict({"backend": "embedded", "embedded": {
        "n_ctx": 1024, "max_tokens": 8, "persona_models": {"ROBIN": key}}})
    mm = ModelManager(config, var_dir=tmp_path)
    try:
        result = mm.chat("ROBIN", [{"role": "user", "content": "Say yes."}])
    finally:
        mm.close()
    path = tmp_path / "models" / model.file_name
    assert result.model == model.file_name and result.content.strip()
    sidecar = json.loads(path.with_name(path.name + ".verified.json").read_text())
    assert sidecar == {"size": model.size, "mtime_ns": path.stat().st_mtime_ns, "sha256": model.sha256}
