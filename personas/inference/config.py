"""Validated view of the `[models]` table of config/settings.toml."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .packaged import DEFAULT_PACKAGED, PACKAGED_MODELS

BACKENDS = ("auto", "ollama", "embedded")

DEFAULT_PERSONA_MODELS: dict[str, str] = {
    "ALFRED": "gemma2:9b",
    "BRICK": "phi3:mini",
    "ROBIN": "llama3.1:8b",
    "BABS": "mistral:7b",
}

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"

_PERSONA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _fail(key: str, problem: str) -> ValueError:
    return ValueError(f"[models] {key}: {problem}")


def _int(d: Mapping[str, Any], key: str, default: int, *, prefix: str, minimum: int) -> int:
    value = d.get(key, default)
    # bool is an int subclass; `keep_alive = true` is a typo we should not accept silently.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(prefix + key, f"expected an integer, got {value!r}")
    if value < minimum:
        raise _fail(prefix + key, f"must be >= {minimum}, got {value}")
    return value


def _str(d: Mapping[str, Any], key: str, default: str, *, prefix: str, allow_empty: bool = False) -> str:
    value = d.get(key, default)
    if not isinstance(value, str):
        raise _fail(prefix + key, f"expected a string, got {value!r}")
    value = value.strip()
    if not value and not allow_empty:
        raise _fail(prefix + key, "must not be empty")
    return value


def _table(d: Mapping[str, Any], key: str, *, prefix: str) -> Mapping[str, Any]:
    value = d.get(key, {})
    if not isinstance(value, Mapping):
        raise _fail(prefix + key, f"expected a table, got {value!r}")
    return value


def _reject_unknown(d: Mapping[str, Any], known: set[str], *, prefix: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise _fail(prefix + unknown[0], f"unknown key (known keys: {', '.join(sorted(known))})")


def normalize_ollama_host(raw: str) -> str:
    """Accept the forms OLLAMA_HOST takes in the wild ("host", "host:port", full URL) and return a URL."""
    value = raw.strip().rstrip("/")
    if not value:
        raise _fail("ollama_host", "must not be empty")
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail("ollama_host", f"expected a URL like http://127.0.0.1:11434, got {raw!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise _fail("ollama_host", f"bad port in {raw!r}") from exc
    if port is None:
        port = 443 if parts.scheme == "https" else 11434
    host = parts.hostname
    # 0.0.0.0 is what people set to make Ollama *listen* everywhere; as a client address it means localhost.
    if host == "0.0.0.0":
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}{parts.path}"


@dataclass(frozen=True)
class EmbeddedConfig:
    """Settings of the in-process llama.cpp backend."""

    gguf_path: str = ""
    n_ctx: int = 4096
    threads: int = 0  # 0: one core fewer than the machine has (at least one); see effective_threads
    max_tokens: int = 512
    persona_models: dict[str, str] = field(default_factory=dict)

    def persona_model(self, persona: str | None) -> str:
        """The persona's own entry in persona_models ("" when none applies). A GGUF path always applies;
        a packaged model's name only while gguf_path is empty, so one gguf_path still sets every persona
        the shipped lineup does not give a file of its own."""
        chosen = self.persona_models.get(persona or "", "")
        if chosen in PACKAGED_MODELS and self.gguf_path:
            return ""
        return chosen

    def source_for(self, persona: str | None) -> str:
        """What a persona's weights come from: its own entry, else gguf_path, else the default packaged model
        (a packaged model's name or a GGUF path)."""
        return self.persona_model(persona) or self.gguf_path or DEFAULT_PACKAGED

    def effective_threads(self) -> int:
        """llama.cpp threads. On all cores generation collapses as soon as anything else runs (on 2 busy
        cores: 3.5 tok/s with 2 threads, 8.8 with 1 — bench/threads.py), so the default leaves one free."""
        if self.threads > 0:
            return self.threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores - 1)


@dataclass(frozen=True)
class ModelsConfig:
    """Which backend to use and which model each persona speaks with."""

    backend: str = "auto"
    ollama_host: str = DEFAULT_OLLAMA_HOST
    keep_alive: int = 0
    request_timeout_s: float = 600.0
    embedding_model: str = "nomic-embed-text"
    personas: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PERSONA_MODELS))
    keep_alive_overrides: dict[str, int] = field(default_factory=dict)
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ModelsConfig:
        """Validate a `[models]` table; raise ValueError naming the offending key."""
        d = d or {}
        if not isinstance(d, Mapping):
            raise ValueError(f"[models] must be a table, got {d!r}")
        _reject_unknown(
            d,
            {
                "backend", "ollama_host", "keep_alive", "request_timeout_s", "embedding_model",
                "personas", "keep_alive_overrides", "embedded",
            },
            prefix="",
        )

        backend = _str(d, "backend", "auto", prefix="").lower()
        if backend not in BACKENDS:
            raise _fail("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")

        ollama_host = normalize_ollama_host(_str(d, "ollama_host", DEFAULT_OLLAMA_HOST, prefix=""))
        # -1 is Ollama's "keep loaded forever"; anything below is meaningless.
        keep_alive = _int(d, "keep_alive", 0, prefix="", minimum=-1)

        timeout = d.get("request_timeout_s", 600)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise _fail("request_timeout_s", f"expected a positive number of seconds, got {timeout!r}")

        embedding_model = _str(d, "embedding_model", "nomic-embed-text", prefix="")

        personas_raw = _table(d, "personas", prefix="")
        personas = dict(DEFAULT_PERSONA_MODELS)
        for name, model in personas_raw.items():
            if not isinstance(name, str) or not _PERSONA_NAME.match(name):
                raise _fail(f"personas.{name}", "persona names are letters, digits and underscores")
            if not isinstance(model, str) or not model.strip():
                raise _fail(f"personas.{name}", f"expected a model name, got {model!r}")
            personas[name.upper()] = model.strip()

        overrides_raw = _table(d, "keep_alive_overrides", prefix="")
        overrides: dict[str, int] = {}
        for name in overrides_raw:
            if not isinstance(name, str) or name.upper() not in personas:
                raise _fail(f"keep_alive_overrides.{name}", f"unknown persona (known: {', '.join(personas)})")
            overrides[name.upper()] = _int(overrides_raw, name, 0, prefix="keep_alive_overrides.", minimum=-1)

        emb_raw = _table(d, "embedded", prefix="")
        p = "embedded."
        _reject_unknown(emb_raw, {"gguf_path", "n_ctx", "threads", "max_tokens", "persona_models"}, prefix=p)
        persona_models_raw = _table(emb_raw, "persona_models", prefix=p)
        persona_models: dict[str, str] = {}
        for name, path in persona_models_raw.items():
            if not isinstance(name, str) or name.upper() not in personas:
                raise _fail(f"{p}persona_models.{name}", f"unknown persona (known: {', '.join(personas)})")
            if not isinstance(path, str) or not path.strip():
                raise _fail(f"{p}persona_models.{name}", f"expected a packaged model ({', '.join(PACKAGED_MODELS)}) "
                            f"or a path to a .gguf file, got {path!r}")
            if path.strip() not in PACKAGED_MODELS and not path.strip().lower().endswith(".gguf"):
                raise _fail(f"{p}persona_models.{name}", f"{path.strip()!r} is neither a packaged model "
                            f"({', '.join(PACKAGED_MODELS)}) nor a path to a .gguf file")
            persona_models[name.upper()] = path.strip()
        embedded = EmbeddedConfig(
            gguf_path=_str(emb_raw, "gguf_path", "", prefix=p, allow_empty=True),
            n_ctx=_int(emb_raw, "n_ctx", 4096, prefix=p, minimum=256),
            threads=_int(emb_raw, "threads", 0, prefix=p, minimum=0),
            max_tokens=_int(emb_raw, "max_tokens", 512, prefix=p, minimum=1),
            persona_models=persona_models,
        )
        if embedded.max_tokens >= embedded.n_ctx:
            raise _fail(p + "max_tokens", f"must be smaller than n_ctx ({embedded.n_ctx})")

        return cls(
            backend=backend,
            ollama_host=ollama_host,
            keep_alive=keep_alive,
            request_timeout_s=float(timeout),
            embedding_model=embedding_model,
            personas=personas,
            keep_alive_overrides=overrides,
            embedded=embedded,
        )

    def persona_of(self, persona_or_model: str) -> str | None:
        """The canonical persona name if the argument names one (case-insensitive), else None."""
        upper = persona_or_model.strip().upper()
        return upper if upper in self.personas else None

    def keep_alive_for(self, persona: str | None) -> int:
        """Seconds Ollama keeps a model loaded after a call for this persona."""
        if persona and persona in self.keep_alive_overrides:
            return self.keep_alive_overrides[persona]
        return self.keep_alive
