"""Ollama backend through the official `ollama` client: chat, embeddings, presence check and pull."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import ollama

from .embedded_backend import BackendReply
from .embeddings import l2_normalize
from .errors import ModelError, ModelMissing, OllamaUnavailable
from .options import ChatOptions
from .toolcalls import calls_from_openai, parse_tool_calls

PROBE_TIMEOUT_S = 1.5


def _unavailable(host: str, exc: BaseException | str) -> OllamaUnavailable:
    return OllamaUnavailable(
        f"Ollama at {host} did not answer ({exc}). Start it with `ollama serve`, or point "
        "OLLAMA_HOST / models.ollama_host at the machine that runs it, or set models.backend = "
        '"embedded" to use the built-in model.'
    )


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text


def same_model(a: str, b: str) -> bool:
    """Ollama treats `name` and `name:latest` as the same model."""

    def norm(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"

    return norm(a) == norm(b)


def messages_for_ollama(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our tool_calls shape ({name, arguments}) to Ollama's ({function: {name, arguments}})."""
    out = []
    for m in messages:
        m = dict(m)
        calls = m.get("tool_calls")
        if calls and all(isinstance(c, dict) and "name" in c and "function" not in c for c in calls):
            m["tool_calls"] = [{"function": {"name": c["name"], "arguments": c.get("arguments") or {}}} for c in calls]
        if m.get("content") is None:
            m["content"] = ""
        out.append(m)
    return out


class OllamaBackend:
    """Talks to one Ollama host. Errors come out as OllamaUnavailable / ModelMissing / ModelError."""

    name = "ollama"

    def __init__(self, host: str, *, timeout_s: float) -> None:
        self.host = host
        self.timeout_s = timeout_s
        self.client = ollama.Client(host=host, timeout=timeout_s)

    # -- reachability ----------------------------------------------------------------------------

    def probe(self, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
        """(answered, human-readable detail) using a short timeout, for backend auto-selection."""
        try:
            resp = httpx.get(f"{self.host}/api/version", timeout=timeout_s)
            resp.raise_for_status()
            version = resp.json().get("version", "?")
        except httpx.HTTPStatusError as exc:
            return False, f"answered HTTP {exc.response.status_code} on /api/version"
        except (httpx.HTTPError, ValueError, OSError) as exc:
            return False, _short(exc)
        return True, f"version {version}"

    @contextlib.contextmanager
    def _errors(self, model: str | None = None) -> Iterator[None]:
        """Translate client/transport failures into our exception classes."""
        try:
            yield
        except ollama.ResponseError as exc:
            text = exc.error or str(exc)
            if exc.status_code == 404 or "not found" in text.lower():
                raise ModelMissing(
                    f"Model {model!r} is not available on Ollama at {self.host}. "
                    f"Pull it from the Models page or run `ollama pull {model}`."
                ) from exc
            raise ModelError(f"Ollama at {self.host} refused the request for {model!r}: {text}") from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, ConnectionError) as exc:
            raise _unavailable(self.host, _short(exc)) from exc
        except httpx.TimeoutException as exc:
            raise ModelError(
                f"Ollama at {self.host} did not finish within {self.timeout_s:.0f}s for {model!r} "
                "(models.request_timeout_s)."
            ) from exc
        except httpx.HTTPError as exc:
            raise _unavailable(self.host, _short(exc)) from exc

    # -- models ----------------------------------------------------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        with self._errors():
            listed = self.client.list()
        out = []
        for m in listed.models:
            details = m.details.model_dump() if m.details else {}
            out.append(
                {
                    "name": m.model,
                    "size": m.size,
                    "digest": m.digest,
                    "modified_at": m.modified_at.isoformat() if m.modified_at else None,
                    "parameter_size": details.get("parameter_size"),
                    "quantization": details.get("quantization_level"),
                }
            )
        return out

    def loaded_models(self) -> list[str]:
        """What Ollama holds in memory right now (`ollama ps`)."""
        with self._errors():
            return [m.model for m in self.client.ps().models if m.model]

    def pull(self, model: str, on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        try:
            self._pull(model, on_progress)
        except ModelError as exc:
            cause = exc.__cause__
            if isinstance(cause, ollama.ResponseError) and "does not exist" in (cause.error or ""):
                raise ModelMissing(
                    f"The Ollama registry has no model {model!r} ({cause.error}); check the name and tag."
                ) from cause
            raise

    def _pull(self, model: str, on_progress: Callable[[dict[str, Any]], None] | None) -> None:
        with self._errors(model):
            for update in self.client.pull(model, stream=True):
                if on_progress is not None:
                    on_progress(
                        {
                            "model": model,
                            "status": update.status,
                            "digest": update.digest,
                            "completed": update.completed,
                            "total": update.total,
                        }
                    )

    # -- inference -------------------------------------------------------------------------------

    def chat(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        options: ChatOptions,
        keep_alive: int,
    ) -> BackendReply:
        tools, json_schema, on_token = options.tools, options.json_schema, options.on_token
        model_options: dict[str, Any] = {}
        if options.max_tokens is not None:
            model_options["num_predict"] = options.max_tokens
        if options.temperature is not None:
            model_options["temperature"] = options.temperature
        if options.seed is not None:
            model_options["seed"] = options.seed
        if options.stop:
            model_options["stop"] = list(options.stop)
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages_for_ollama(messages),
            "keep_alive": keep_alive,
        }
        if tools:
            kwargs["tools"] = tools
        if json_schema is not None:
            kwargs["format"] = json_schema
        if model_options:
            kwargs["options"] = model_options

        pieces: list[str] = []
        calls: list[dict[str, Any]] = []
        final: Any = None
        with self._errors(model):
            if on_token is None:
                final = self.client.chat(**kwargs, stream=False)
                pieces.append(final.message.content or "")
                calls.extend(calls_from_openai(final.message.tool_calls))
            else:
                for chunk in self.client.chat(**kwargs, stream=True):
                    piece = chunk.message.content or ""
                    if piece:
                        pieces.append(piece)
                        on_token(piece)
                    calls.extend(calls_from_openai(chunk.message.tool_calls))  # type: ignore[arg-type]  # ollama's ToolCall reads by key
                    if chunk.done:
                        final = chunk
        content = "".join(pieces)
        if tools and not calls:
            # Models without native tool support in Ollama still sometimes write the call as text.
            calls, rest = parse_tool_calls(content, [t["function"]["name"] for t in tools])
            if calls:
                content = rest

        eval_count = int(getattr(final, "eval_count", 0) or 0)
        eval_ns = int(getattr(final, "eval_duration", 0) or 0)
        return BackendReply(
            content=content,
            tool_calls=calls,
            prompt_tokens=int(getattr(final, "prompt_eval_count", 0) or 0),
            completion_tokens=eval_count,
            load_ms=(getattr(final, "load_duration", 0) or 0) / 1e6,
            tokens_per_s=(eval_count / (eval_ns / 1e9)) if eval_ns else 0.0,
            model=model,
            engine_ms=(
                (getattr(final, "prompt_eval_duration", 0) or 0) + eval_ns
            ) / 1e6,
        )

    def embed(self, model: str, texts: list[str], *, keep_alive: int) -> np.ndarray:
        with self._errors(model):
            resp = self.client.embed(model=model, input=list(texts), keep_alive=keep_alive)
        vectors = np.asarray(resp.embeddings, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ModelError(f"Ollama returned {vectors.shape} embeddings for {len(texts)} texts from {model!r}.")
        return l2_normalize(vectors)
