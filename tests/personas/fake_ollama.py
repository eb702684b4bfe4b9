"""A small real HTTP server that speaks enough of Ollama's API for the backend tests, recording requests."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeOllama:
    """State of the fake: installed models, scripted chat replies, and every request received."""

    models: list[str] = field(default_factory=lambda: ["phi3:mini", "nomic-embed-text:latest"])
    # Each reply: {"content": str | list[str] (list = stream pieces), "tool_calls": [...]}.
    replies: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    embedding_dim: int = 8
    on_chat: Callable[[dict[str, Any]], None] | None = None
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for _, p, body in self.requests if p == path]

    def has(self, name: str) -> bool:
        def norm(n: str) -> str:
            return n if ":" in n else n + ":latest"

        return any(norm(name) == norm(m) for m in self.models)

    def start(self) -> FakeOllama:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else {}

            def _json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _ndjson(self, lines: list[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in lines:
                    data = (json.dumps(line) + "\n").encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def _missing(self, model: str) -> None:
                self._json(404, {"error": f"model '{model}' not found"})

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, {}))
                if self.path == "/api/version":
                    self._json(200, {"version": "0.0.0-fake"})
                elif self.path == "/api/tags":
                    self._json(200, {"models": [_tag(m) for m in fake.models]})
                elif self.path == "/api/ps":
                    self._json(200, {"models": [_tag(m) for m in fake.running]})
                else:
                    self._json(404, {"error": "not found"})

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = self._body()
                fake.requests.append(("POST", self.path, body))
                if self.path == "/api/show":
                    if fake.has(body.get("model", "")):
                        self._json(200, {"modelfile": "", "details": {"format": "gguf"}})
                    else:
                        self._missing(body.get("model", ""))
                elif self.path == "/api/chat":
                    self._chat(body)
                elif self.path == "/api/embed":
                    if not fake.has(body.get("model", "")):
                        return self._missing(body.get("model", ""))
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    self._json(200, {"model": body["model"],
                                     "embeddings": [_vector(t, fake.embedding_dim) for t in inputs]})
                elif self.path == "/api/pull":
                    self._pull(body)
                else:
                    self._json(404, {"error": "not found"})

            def _chat(self, body: dict[str, Any]) -> None:
                model = body.get("model", "")
                if not fake.has(model):
                    return self._missing(model)
                if fake.on_chat is not None:
                    fake.on_chat(body)
                reply = fake.replies.pop(0) if fake.replies else {"content": "ok"}
                pieces = reply["content"] if isinstance(reply["content"], list) else [reply["content"]]
                message = {"role": "assistant", "content": ""}
                stats = {
                    "done": True, "done_reason": "stop", "total_duration": 900_000_000,
                    "load_duration": 250_000_000, "prompt_eval_count": 12, "prompt_eval_duration": 100_000_000,
                    "eval_count": 20, "eval_duration": 500_000_000,
                }
                if body.get("stream", True):
                    lines = [
                        {"model": model, "created_at": "2025-01-01T00:00:00Z",
                         "message": {"role": "assistant", "content": p}, "done": False}
                        for p in pieces
                    ]
                    final = {"model": model, "created_at": "2025-01-01T00:00:00Z",
                             "message": dict(message, tool_calls=reply.get("tool_calls") or None), **stats}
                    if not final["message"]["tool_calls"]:
                        del final["message"]["tool_calls"]
                    self._ndjson([*lines, final])
                else:
                    message["content"] = "".join(pieces)
                    if reply.get("tool_calls"):
                        message["tool_calls"] = reply["tool_calls"]
                    self._json(200, {"model": model, "created_at": "2025-01-01T00:00:00Z", "message": message, **stats})

            def _pull(self, body: dict[str, Any]) -> None:
                model = body.get("model", "")
                if model.startswith("nonexistent"):
                    return self._ndjson([{"status": "pulling manifest"},
                                         {"error": "pull model manifest: file does not exist"}])
                total = 4_000
                lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
                lines += [
                    {"status": "pulling abc123", "digest": "sha256:abc123", "total": total, "completed": done}
                    for done in (0, 1_000, 2_500, 4_000)
                ]
                lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
                fake.models.append(model)
                self._ndjson(lines)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _tag(name: str) -> dict[str, Any]:
    full = name if ":" in name else name + ":latest"
    return {
        "name": full, "model": full, "modified_at": "2025-01-01T00:00:00Z", "size": 2_000_000_000,
        "digest": hashlib.sha256(full.encode()).hexdigest(),
        "details": {"format": "gguf", "family": "fake", "parameter_size": "3.8B", "quantization_level": "Q4_0"},
    }


def _vector(text: str, dim: int) -> list[float]:
    """Deterministic, not normalised, so the test can see that the backend normalises."""
    digest = hashlib.sha256(text.encode()).digest()
    return [float(b) + 1.0 for b in digest[:dim]]
