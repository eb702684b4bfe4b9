"""ModelManager: the one way the rest of A4PS reaches a language or embedding model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .config import ModelsConfig
from .embedded_backend import BackendReply, EmbeddedBackend
from .embeddings import MINILM_DIM, MiniLMEmbedder
from .errors import ModelError, ModelOutputInvalid, OllamaUnavailable
from .lock import make_lock
from .ollama_backend import OllamaBackend, same_model
from .options import ChatOptions
from .toolcalls import normalize_tools


@dataclass
class ChatResult:
    """One model answer. `parsed` holds the decoded JSON when a json_schema was requested."""

    content: str
    tool_calls: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    load_ms: float
    total_ms: float
    tokens_per_s: float
    model: str
    backend: str
    persona: str | None = None
    parsed: Any = None
    engine_ms: float = 0.0  # prompt + generation time as the engine reports it; total_ms minus this is overhead
    wait_ms: float = 0.0  # time spent waiting for the model lock (another job held the model), part of total_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CallRecord:
    """What happened on one chat call, for the swap timeline (persisted by the web layer)."""

    model: str
    persona: str | None
    backend: str
    load_ms: float
    prompt_tokens: int
    completion_tokens: int
    tokens_per_s: float
    started_at: datetime
    ok: bool
    error: str = ""
    total_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat()
        return d


@dataclass
class _Choice:
    backend: str
    reason: str
    chosen_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _check_schema(value: Any, schema: dict[str, Any]) -> str | None:
    """Shallow check of the parts of a schema callers lean on: top-level type and required keys."""
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if kind in types and not isinstance(value, types[kind]):
        return f"expected a JSON {kind}, got {type(value).__name__}"
    if kind in ("number", "integer") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"expected a JSON {kind}, got {type(value).__name__}"
    if kind == "object" and isinstance(value, dict):
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            return f"missing required key(s): {', '.join(missing)}"
    return None


PROMOTED = "promoted"  # chat(adapter=...): the persona's promoted fine-tune, if any


class ModelManager:
    """Chooses a backend (Ollama or in-process llama.cpp), serialises model use across processes,
    and reports every call and every load/unload to the callbacks the web layer provides."""

    def __init__(
        self,
        config: ModelsConfig,
        *,
        var_dir: Path,
        lock_url: str | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        override_for: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> None:
        self.config = config
        self.var_dir = Path(var_dir)
        self.lock = make_lock(var_dir=self.var_dir, lock_url=lock_url)
        self._on_call = on_call
        self._on_status = on_status
        # A promoted fine-tune for a persona: {"base_model", "lora_path", "lora_scale", "ollama_model"}.
        self._override_for = override_for or (lambda persona: None)
        self._choice: _Choice | None = None
        self._choice_lock = threading.Lock()
        self._ollama = OllamaBackend(config.ollama_host, timeout_s=config.request_timeout_s)
        self._embedded: EmbeddedBackend | None = None
        self._embedder: MiniLMEmbedder | None = None
        self._ollama_loaded: str | None = None
        self._embedding_dim: int | None = None

    # -- backend choice ----------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """"ollama" or "embedded"; probes Ollama once when the config says auto."""
        return self._choose().backend

    def backend_choice(self) -> tuple[str, str]:
        """(backend, why): the backend this manager answers with and the reason it was chosen."""
        choice = self._choose()
        return choice.backend, choice.reason

    def _choose(self) -> _Choice:
        with self._choice_lock:
            if self._choice is None:
                self._choice = self._decide()
            return self._choice

    def _decide(self) -> _Choice:
        host = self.config.ollama_host
        if self.config.backend == "embedded":
            return _Choice("embedded", "models.backend is \"embedded\"; using the in-process llama.cpp model")
        if self.config.backend == "ollama":
            return _Choice("ollama", f"models.backend is \"ollama\"; using Ollama at {host}")
        answered, detail = self._ollama.probe()
        if answered:
            return _Choice("ollama", f"Ollama at {host} answered ({detail}); using it")
        return _Choice("embedded", f"Ollama at {host} did not answer: {detail}; using the embedded model")

    def _embedded_backend(self) -> EmbeddedBackend:
        if self._embedded is None:
            self._embedded = EmbeddedBackend(
                self.config.embedded,
                var_dir=self.var_dir,
                on_status=lambda state, model, load_ms: self._emit_status(state, model, "embedded", load_ms),
            )
        return self._embedded

    def _emit_status(self, state: str, model: str | None, backend: str, load_ms: float | None = None) -> None:
        if self._on_status is not None:
            self._on_status(
                {
                    "state": state,
                    "model": model,
                    "backend": backend,
                    "load_ms": load_ms,
                    "at": datetime.now(UTC).isoformat(),
                }
            )

    # -- resolution --------------------------------------------------------------------------------

    def resolve(self, persona_or_model: str) -> tuple[str | None, str]:
        """(persona or None, model name on the active backend)."""
        persona = self.config.persona_of(persona_or_model)
        if self.backend == "ollama":
            return persona, self.config.personas[persona] if persona else persona_or_model
        return persona, self._embedded_backend().describe_model(persona, persona_or_model)

    # -- chat --------------------------------------------------------------------------------------

    def chat(
        self,
        persona_or_model: str,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        json_schema: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | tuple[str, ...] | None = None,
        seed: int | None = None,
        adapter: dict[str, Any] | None | str = PROMOTED,
    ) -> ChatResult:
        """Ask a persona (ALFRED/BRICK/ROBIN/BABS, any case) or a named model.

        `adapter` chooses the persona's weights: PROMOTED (its promoted fine-tune, if any), or explicitly
        {"base_model": GGUF, "lora_path": LoRA GGUF or "" for the bare base, "lora_scale",
        "ollama_model"} — how a fine-tune is compared with its base before it is promoted.

        `tools` are JSON-schema function specs; calls come back in `tool_calls` as
        {name, arguments}. With `json_schema` the reply is constrained to it and decoded into
        `parsed` (ModelOutputInvalid if it still does not decode). `on_token` receives text
        pieces as they are generated; their concatenation equals `content`. `seed` fixes the sampler's
        seed, so that a sampled reply can be drawn again (evals compare variants on the same draws).
        """
        if not messages:
            raise ValueError("chat() needs at least one message")
        if tools and json_schema is not None:
            raise ValueError("chat() takes either tools or a json_schema, not both")
        norm_tools = normalize_tools(tools) if tools else None
        persona = self.config.persona_of(persona_or_model)
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        backend = "?"
        model = persona_or_model
        reply: BackendReply | None = None
        try:
            backend = self.backend
            _, model = self.resolve(persona_or_model)
            with self.lock.hold(wait_s=self.config.request_timeout_s * 2):
                wait_ms = (time.perf_counter() - t0) * 1000
                options = ChatOptions(tools=norm_tools, json_schema=json_schema, on_token=on_token,
                                      max_tokens=max_tokens, temperature=temperature, stop=tuple(stop or ()),
                                      seed=seed)
                reply = self._chat_on(backend, persona, model if backend == "ollama" else persona_or_model,
                                      messages, options, adapter)
            result = self._finish(reply, backend, persona, json_schema, t0)
            result.wait_ms = round(wait_ms, 1)
        except Exception as exc:
            self._record(
                model=reply.model if reply else model, persona=persona, backend=backend, reply=reply,
                started_at=started_at, t0=t0, ok=False, error=str(exc),
            )
            raise
        self._record(model=result.model, persona=persona, backend=backend, reply=reply,
                     started_at=started_at, t0=t0, ok=True, error="")
        return result

    def _chat_on(
        self,
        backend: str,
        persona: str | None,
        model: str,
        messages: list[dict[str, Any]],
        options: ChatOptions,
        adapter: dict[str, Any] | None | str = PROMOTED,
    ) -> BackendReply:
        if adapter == PROMOTED:
            override = self._override_for(persona) if persona else None
            if override and not override.get("lora_path"):
                override = None
        else:
            override = adapter if isinstance(adapter, dict) else None
        if backend == "embedded":
            return self._embedded_backend().chat(
                persona=persona, model_name=None if persona else model, messages=messages, options=options,
                adapter=override,
            )
        if adapter != PROMOTED and override and override.get("lora_path") and not override.get("ollama_model"):
            raise ModelError("This fine-tune's adapter has no Ollama model, so Ollama cannot answer with it; "
                             "comparing it with its base needs the embedded backend.")
        if override and override.get("ollama_model"):
            model = override["ollama_model"]
        keep_alive = self.config.keep_alive_for(persona)
        announced = self._ollama_loaded is None or not same_model(self._ollama_loaded, model)
        if announced:
            self._emit_status("loading", model, "ollama")
        try:
            reply = self._ollama.chat(
                model=model, messages=messages, options=options, keep_alive=keep_alive,
            )
        except ModelError:
            if announced or self._ollama_loaded is not None:
                self._emit_status("unloaded", model, "ollama")
            self._ollama_loaded = None
            raise
        self._emit_status("loaded", model, "ollama", reply.load_ms)
        if keep_alive == 0:
            # Ollama unloads right after answering; say so, so the timeline shows the VRAM free.
            self._ollama_loaded = None
            self._emit_status("unloaded", model, "ollama")
        else:
            self._ollama_loaded = model
        return reply

    def _finish(
        self, reply: BackendReply, backend: str, persona: str | None, json_schema: dict[str, Any] | None, t0: float
    ) -> ChatResult:
        parsed = None
        if json_schema is not None:
            try:
                parsed = json.loads(reply.content)
            except json.JSONDecodeError as exc:
                snippet = reply.content.strip().replace("\n", " ")[:200] or "(empty)"
                raise ModelOutputInvalid(
                    f"{reply.model} was asked for JSON but answered: {snippet!r} ({exc.msg} at char {exc.pos})",
                    content=reply.content, completion_tokens=reply.completion_tokens,
                    prompt_tokens=reply.prompt_tokens,
                ) from exc
            problem = _check_schema(parsed, json_schema)
            if problem:
                raise ModelOutputInvalid(f"{reply.model} returned JSON that does not match the schema: {problem}",
                                         content=reply.content, completion_tokens=reply.completion_tokens,
                                         prompt_tokens=reply.prompt_tokens)
        return ChatResult(
            content=reply.content,
            tool_calls=reply.tool_calls,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            load_ms=round(reply.load_ms, 1),
            total_ms=round((time.perf_counter() - t0) * 1000, 1),
            tokens_per_s=round(reply.tokens_per_s, 2),
            model=reply.model,
            backend=backend,
            persona=persona,
            parsed=parsed,
            engine_ms=round(reply.engine_ms, 1),
        )

    def _record(
        self, *, model: str, persona: str | None, backend: str, reply: BackendReply | None,
        started_at: datetime, t0: float, ok: bool, error: str,
    ) -> None:
        if self._on_call is None:
            return
        self._on_call(
            CallRecord(
                model=model,
                persona=persona,
                backend=backend,
                load_ms=round(reply.load_ms, 1) if reply else 0.0,
                prompt_tokens=reply.prompt_tokens if reply else 0,
                completion_tokens=reply.completion_tokens if reply else 0,
                tokens_per_s=round(reply.tokens_per_s, 2) if reply else 0.0,
                started_at=started_at,
                ok=ok,
                error=error,
                total_ms=round((time.perf_counter() - t0) * 1000, 1),
            )
        )

    # -- embeddings --------------------------------------------------------------------------------

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised embeddings, shape (len(texts), embedding_dim), float32."""
        texts = list(texts)
        if self.backend == "ollama":
            if not texts:
                return np.zeros((0, self._embedding_dim or 0), dtype=np.float32)
            keep_alive = self.config.keep_alive
            # The embedding model competes for VRAM with the chat models, so it takes the lock too.
            with self.lock.hold(wait_s=self.config.request_timeout_s * 2):
                vectors = self._ollama.embed(self.config.embedding_model, texts, keep_alive=keep_alive)
            self._embedding_dim = int(vectors.shape[1])
            return vectors
        # MiniLM is small and lives in this process beside the chat model; no VRAM to share.
        return self._minilm().embed(texts)

    def _minilm(self) -> MiniLMEmbedder:
        if self._embedder is None:
            self._embedder = MiniLMEmbedder()
        return self._embedder

    @property
    def embedding_dim(self) -> int:
        if self.backend == "embedded":
            return MINILM_DIM
        if self._embedding_dim is None:
            self.embed(["dimension probe"])
        assert self._embedding_dim is not None
        return self._embedding_dim

    @property
    def embedding_model(self) -> str:
        return self.config.embedding_model if self.backend == "ollama" else MiniLMEmbedder.name

    # -- Ollama model management -------------------------------------------------------------------

    def _require_ollama(self, what: str) -> OllamaBackend:
        if self.backend != "ollama":
            raise OllamaUnavailable(
                f"{what} needs Ollama, but the embedded model is in use ({self._choose().reason})."
            )
        return self._ollama

    def list_models(self) -> list[dict[str, Any]]:
        """Models present on the Ollama host: name, size, digest, modified_at, parameter_size, quantization."""
        return self._require_ollama("Listing models").list_models()

    def pull(self, model: str, on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Download a model into Ollama, reporting {model, status, digest, completed, total} as it goes."""
        self._require_ollama(f"Pulling {model}").pull(model, on_progress)

    def missing_models(self) -> list[str]:
        """Configured persona and embedding models the Ollama host does not have."""
        present = [m["name"] for m in self._ollama.list_models()]
        wanted = list(dict.fromkeys([*self.config.personas.values(), self.config.embedding_model]))
        return [w for w in wanted if not any(same_model(w, p) for p in present)]

    # -- status ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Everything the Models page shows; never raises for an unreachable Ollama."""
        choice = self._choose()
        info: dict[str, Any] = {
            "backend": choice.backend,
            "reason": choice.reason,
            "chosen_at": choice.chosen_at.isoformat(),
            "configured_backend": self.config.backend,
            "ollama_host": self.config.ollama_host,
            "lock": self.lock.describe(),
            "personas": {p: self.resolve(p)[1] for p in self.config.personas},
            "embedding_model": self.embedding_model,
            "loaded_model": None,
            "missing_models": [],
            "error": "",
        }
        if choice.backend == "ollama":
            info["keep_alive"] = {p: self.config.keep_alive_for(p) for p in self.config.personas}
            try:
                loaded = self._ollama.loaded_models()
                info["loaded_model"] = loaded[0] if loaded else None
                info["missing_models"] = self.missing_models()
            except ModelError as exc:
                info["error"] = str(exc)
        else:
            emb = self._embedded_backend()
            info["loaded_model"] = emb.loaded_model
            info["gguf_path"] = self.config.embedded.gguf_path or str(
                self.var_dir / "models" / emb.describe_model(None)
            )
        return info

    def close(self) -> None:
        """Free the in-process model (tests and shutdown), after any call in flight has finished."""
        if self._embedded is not None:
            with self.lock.hold(wait_s=self.config.request_timeout_s):
                self._embedded.close()
