"""Validation of the [models] settings table and tool-call recovery from model text."""

from __future__ import annotations

import pytest

from personas.inference import ModelsConfig
from personas.inference.toolcalls import normalize_tools, parse_tool_calls


def test_defaults_match_the_documented_settings():
    cfg = ModelsConfig.from_dict({})
    assert cfg.backend == "auto" and cfg.keep_alive == 0 and cfg.request_timeout_s == 600
    assert cfg.ollama_host == "http://127.0.0.1:11434"
    assert cfg.personas == {"ALFRED": "gemma2:9b", "BRICK": "phi3:mini", "ROBIN": "llama3.1:8b", "BABS": "mistral:7b"}
    assert cfg.embedded.n_ctx == 4096 and cfg.embedded.gguf_path == "" and cfg.embedded.persona_models == {}


def test_full_table_is_read_and_persona_names_are_case_insensitive():
    cfg = ModelsConfig.from_dict(
        {
            "backend": "OLLAMA",
            "ollama_host": "gpu-box:11500",
            "keep_alive": 0,
            "personas": {"brick": "phi3:medium"},
            "keep_alive_overrides": {"alfred": 300},
            "embedded": {"gguf_path": "/models/x.gguf", "threads": 2, "persona_models": {"Robin": "/m/r.gguf"}},
        }
    )
    assert cfg.backend == "ollama"
    assert cfg.ollama_host == "http://gpu-box:11500"
    assert cfg.personas["BRICK"] == "phi3:medium" and cfg.personas["ALFRED"] == "gemma2:9b"
    assert cfg.keep_alive_for("ALFRED") == 300 and cfg.keep_alive_for("BRICK") == 0
    assert cfg.persona_of("brick") == "BRICK" and cfg.persona_of("phi3:mini") is None
    assert cfg.embedded.persona_models == {"ROBIN": "/m/r.gguf"}


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"backend": "gpu"}, "backend"),
        ({"keep_alive": "5m"}, "keep_alive"),
        ({"keep_alive": True}, "keep_alive"),
        ({"request_timeout_s": 0}, "request_timeout_s"),
        ({"ollama_host": "ftp://x"}, "ollama_host"),
        ({"personas": {"BRICK": ""}}, "personas.BRICK"),
        ({"keep_alive_overrides": {"NOBODY": 5}}, "keep_alive_overrides.NOBODY"),
        ({"embedded": {"n_ctx": 16}}, "embedded.n_ctx"),
        ({"embedded": {"threads": -1}}, "embedded.threads"),
        ({"embedded": {"max_tokens": 5000, "n_ctx": 4096}}, "embedded.max_tokens"),
        ({"embedded": {"gpu_layers": 3}}, "embedded.gpu_layers"),
        ({"embeding_model": "x"}, "embeding_model"),
    ],
)
def test_bad_values_name_the_key(table, key):
    with pytest.raises(ValueError) as err:
        ModelsConfig.from_dict(table)
    assert f"[models] {key}:" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ("0.0.0.0:11434", "http://127.0.0.1:11434"),
        ("https://ollama.example.com", "https://ollama.example.com:443"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
    ],
)
def test_ollama_host_forms(raw, url):
    assert ModelsConfig.from_dict({"ollama_host": raw}).ollama_host == url


@pytest.mark.parametrize(
    ("text", "args", "rest"),
    [
        ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', {"city": "Paris"}, ""),
        ('<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}', {"city": "Rome"}, ""),
        ('Sure:\n```json\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}\n```\nDone.',
         {"city": "Oslo"}, "Sure:\n\nDone."),
        ('{"name": "get_weather", "parameters": {"city": "Lima"}} and then more text', {"city": "Lima"},
         "and then more text"),
        ('[{"name": "get_weather", "arguments": {"city": "Kyiv"}}]', {"city": "Kyiv"}, ""),
    ],
)
def test_tool_calls_are_recovered_from_text(text, args, rest):
    calls, remaining = parse_tool_calls(text, ["get_weather"])
    assert calls == [{"name": "get_weather", "arguments": args}]
    assert remaining == rest


def test_json_that_is_not_a_known_tool_is_left_alone():
    text = '{"name": "Ann", "arguments": {"x": 1}}'
    assert parse_tool_calls(text, ["get_weather"]) == ([], text)
    assert parse_tool_calls("no calls here {broken", ["get_weather"]) == ([], "no calls here {broken")


def test_tool_specs_are_normalised_and_bad_ones_rejected():
    bare = {"name": "f", "parameters": {"type": "object", "properties": {}}}
    assert normalize_tools([bare])[0] == {"type": "function", "function": {**bare, "description": ""}}
    with pytest.raises(ValueError, match="tools\\[0\\]"):
        normalize_tools([{"description": "no name"}])


def test_embedded_gguf_choice_per_persona(tmp_path):
    from personas.inference.embedded_backend import EmbeddedBackend

    robin = tmp_path / "robin.gguf"
    robin.write_bytes(b"GGUF" + b"\0" * 16)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF" + b"\0" * 16)
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_bytes(b"hello")
    cfg = ModelsConfig.from_dict({"embedded": {"gguf_path": str(other), "persona_models": {"robin": str(robin)}}})
    backend = EmbeddedBackend(cfg.embedded, var_dir=tmp_path)
    assert backend.gguf_for("ROBIN") == robin
    assert backend.gguf_for("BRICK") == other
    assert backend.gguf_for(None, "phi3:mini") == other
    from personas.inference import EmbeddedModelError

    with pytest.raises(EmbeddedModelError, match="not a GGUF file"):
        backend.gguf_for(None, str(not_gguf))


def test_the_embedded_thread_default_leaves_one_core_free(monkeypatch):
    import os

    from personas.inference.config import EmbeddedConfig

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert EmbeddedConfig().effective_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert EmbeddedConfig().effective_threads() == 7
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert EmbeddedConfig().effective_threads() == 1
    assert EmbeddedConfig(threads=3).effective_threads() == 3
