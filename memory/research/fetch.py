"""Web search and page fetching for BABS, with the guards a program that fetches URLs chosen by a model
and a search engine needs: http(s) only, no private, loopback or link-local address (checked on every
redirect hop) unless the settings allow it, a timeout, a size cap, a content-type check and a limit on
redirects. Failures are FetchError with a reason a person can read."""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urljoin, urlsplit

import httpx

TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain")


class FetchError(Exception):
    """A search or a fetch that was refused or failed; the message says why."""


@dataclass(frozen=True)
class WebSettings:
    enabled: bool = False
    provider: str = "searxng"  # searxng | template
    searxng_url: str = ""  # e.g. http://localhost:8888 (the instance's JSON API must be enabled)
    search_url_template: str = ""  # for "template": a URL with {query}, answering JSON
    results_key: str = "results"  # where the template's JSON keeps its result list
    url_key: str = "url"
    title_key: str = "title"
    snippet_key: str = "content"
    max_results: int = 3  # pages fetched per search
    timeout_s: float = 10.0
    max_page_kb: int = 2048
    max_redirects: int = 3
    allow_private: bool = False  # fetch pages on private, loopback or link-local addresses
    allow_hosts: tuple[str, ...] = ()  # "host" or "host:port" exempt from the address check
    user_agent: str = "A4PS-BABS/1.0 (local research assistant)"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WebSettings:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown web setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            default = getattr(cls, key)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"web.{key} must be true or false")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ValueError(f"web.{key} must be a positive whole number")
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError(f"web.{key} must be a positive number")
            elif isinstance(default, tuple):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"web.{key} must be a list of strings")
                value = tuple(v.strip().lower() for v in value)
            elif not isinstance(value, str):
                raise ValueError(f"web.{key} must be a string")
            values[key] = value
        settings = cls(**values)
        if settings.provider not in ("searxng", "template"):
            raise ValueError("web.provider must be searxng or template")
        if settings.enabled and settings.provider == "searxng" and not settings.searxng_url:
            raise ValueError("web.searxng_url is empty: give the SearxNG instance's address")
        if settings.enabled and settings.provider == "template" and "{query}" not in settings.search_url_template:
            raise ValueError("web.search_url_template must contain {query}")
        return settings

    @property
    def provider_label(self) -> str:
        if self.provider == "searxng":
            return f"SearxNG at {self.searxng_url or '(no address)'}"
        return f"search URL {self.search_url_template or '(no template)'}"


@dataclass(frozen=True)
class SearchResult:
    url: str
    title: str
    snippet: str


@dataclass(frozen=True)
class Page:
    url: str  # as asked for
    final_url: str  # after redirects
    content_type: str
    body: bytes
    fetched_at: str  # ISO time, UTC


def _client(settings: WebSettings) -> httpx.Client:
    return httpx.Client(timeout=settings.timeout_s, follow_redirects=False, trust_env=False,
                        headers={"User-Agent": settings.user_agent, "Accept": "text/html, text/plain;q=0.9"})


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A global address, looking through IPv6 forms that carry an IPv4 one (mapped, 6to4, NAT64, compat)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and (address in _NAT64 or int(address) >> 32 == 0):
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None and not inner.is_global:
            return False
    return address.is_global


def _allowed(host: str, port: int, settings: WebSettings) -> bool:
    return settings.allow_private or host in settings.allow_hosts or f"{host}:{port}" in settings.allow_hosts


def _refused(url: str, host: str, address: object) -> FetchError:
    return FetchError(f"{url}: refused, {host} is a private, loopback or link-local address ({address}); "
                      "allow it with web.allow_hosts or web.allow_private")


def _check_address(url: str, settings: WebSettings) -> tuple[str, int]:
    """The host and port of a URL that may be fetched; FetchError otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise FetchError(f"{url}: not a valid address ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"{url}: only http and https pages are fetched")
    host = (parts.hostname or "").lower()
    if not host:
        raise FetchError(f"{url}: no host in the address")
    if _allowed(host, port, settings):
        return host, port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"{url}: the host {host} does not resolve ({getattr(exc, 'strerror', None) or exc})") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not _public(address):
            raise _refused(url, host, address)
    return host, port


def _check_peer(url: str, host: str, port: int, response: httpx.Response, settings: WebSettings) -> None:
    """The address the connection really reached (a name may resolve differently the second time)."""
    if _allowed(host, port, settings):
        return
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        raise FetchError(f"{url}: could not tell which address answered; not kept")
    address = ipaddress.ip_address(str(peer[0]).split("%")[0])
    if not _public(address):
        raise _refused(url, host, address)


def fetch(url: str, settings: WebSettings) -> Page:
    """GET a page, following at most max_redirects redirects, each hop checked before it is followed."""
    limit = settings.max_page_kb * 1024
    current = url
    with _client(settings) as client:
        for _hop in range(settings.max_redirects + 1):
            host, port = _check_address(current, settings)
            try:
                with client.stream("GET", current) as response:
                    _check_peer(current, host, port, response, settings)
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        if not location:
                            raise FetchError(f"{current}: a redirect without a Location")
                        current = urljoin(current, location)
                        continue
                    if response.status_code >= 400:
                        raise FetchError(f"{current}: the server answered {response.status_code}")
                    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    if kind not in TEXT_TYPES:
                        raise FetchError(f"{current}: not a web page ({kind or 'no content type'})")
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > limit:
                        raise FetchError(f"{current}: {declared // 1024} KB; the limit is {settings.max_page_kb} KB")
                    body = bytearray()
                    for part in response.iter_bytes():
                        body.extend(part)
                        if len(body) > limit:
                            raise FetchError(f"{current}: larger than the {settings.max_page_kb} KB limit")
                    return Page(url, current, kind, bytes(body), datetime.now(UTC).isoformat(timespec="seconds"))
            except httpx.TimeoutException:
                raise FetchError(f"{current}: no answer within {settings.timeout_s:g} s") from None
            except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError) as exc:
                raise FetchError(f"{current}: {type(exc).__name__}: {exc}") from None
    raise FetchError(f"{url}: more than {settings.max_redirects} redirects")


def search(query: str, settings: WebSettings) -> list[SearchResult]:
    """The provider's results for a query (the provider's own address is trusted: it is configured)."""
    if settings.provider == "searxng":
        url = settings.searxng_url.rstrip("/") + "/search"
        params: dict[str, str] | None = {"q": query, "format": "json"}
        results_key, url_key, title_key, snippet_key = "results", "url", "title", "content"
    else:
        url = settings.search_url_template.replace("{query}", quote_plus(query))
        params = None
        results_key, url_key = settings.results_key, settings.url_key
        title_key, snippet_key = settings.title_key, settings.snippet_key
    try:
        with _client(settings) as client:
            response = client.get(url, params=params, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise FetchError(f"the search provider did not answer ({type(exc).__name__}: {exc})") from None
    if response.status_code != 200:
        raise FetchError(f"the search provider answered {response.status_code}"
                         + (" (is its JSON format enabled?)" if response.status_code == 403 else ""))
    try:
        data = response.json()
    except ValueError:
        raise FetchError("the search provider did not answer JSON") from None
    items = data.get(results_key) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise FetchError(f"the search provider's JSON has no list under {results_key!r}")
    found: list[SearchResult] = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get(url_key), str):
            found.append(SearchResult(item[url_key], str(item.get(title_key) or ""), str(item.get(snippet_key) or "")))
    return found
