"""A local stand-in for the web in tests: a SearxNG-style JSON search endpoint, a generic JSON search
endpoint, and pages (HTML, a redirect to a loopback address, a binary file, a huge page, a redirect loop).
It listens on 127.0.0.1, so tests allow exactly its host:port; a second server plays a private service
that a redirect must not reach."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeWeb:
    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {}  # path -> (content type, body)
        self.redirects: dict[str, str] = {}  # path -> Location
        self.results: list[dict[str, str]] = []  # what a search returns (urls may be paths: made absolute)
        self.queries: list[str] = []
        self.requests: list[str] = []
        self.search_status = 200
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def page(self, path: str, html: str, content_type: str = "text/html; charset=utf-8") -> str:
        self.pages[path] = (content_type, html.encode())
        return self.base + path

    def __enter__(self) -> FakeWeb:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                parts = urlsplit(self.path)
                web.requests.append(parts.path)
                if parts.path in ("/search", "/api/find"):
                    query = parse_qs(parts.query).get("q", [""])[0]
                    web.queries.append(query)
                    results = [{**r, "url": r["url"] if "://" in r["url"] else web.base + r["url"]}
                               for r in web.results]
                    key = "results" if parts.path == "/search" else "hits"
                    if parts.path == "/api/find":
                        results = [{"link": r["url"], "name": r.get("title", "")} for r in results]
                    self._send(web.search_status, "application/json", json.dumps({key: results}).encode())
                elif parts.path in web.redirects:
                    self._send(302, "text/plain", b"moved", {"Location": web.redirects[parts.path]})
                elif parts.path in web.pages:
                    content_type, body = web.pages[parts.path]
                    self._send(200, content_type, body)
                else:
                    self._send(404, "text/plain", b"not found")

        return Handler
