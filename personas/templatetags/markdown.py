"""`{{ text|markdown }}`: the personas' Markdown (headings, emphasis, lists, code blocks, tables) as
safe HTML. Raw HTML in the text is not passed through, and the result is cleaned by an allow-list
sanitiser as well, so a model's `<script>` or `onclick=` never reaches the page."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import nh3
from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from personas.graph.citations import CITATION

register = template.Library()

_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable("table")
_TAGS = {"p", "br", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "code", "pre", "blockquote", "ul", "ol",
         "li", "hr", "a", "table", "thead", "tbody", "tr", "th", "td", "del"}
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}}


@register.filter(name="markdown")
def markdown(text: object) -> SafeString:
    html = _renderer.render(str(text or ""))
    clean = nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                      link_rel="noopener noreferrer nofollow")
    return mark_safe(clean)  # noqa: S308 - rendered without raw HTML, then cleaned by an allow-list


# A tag in sanitised HTML (attribute values have their "<" and ">" escaped, so a tag ends at the first ">").
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)\b[^>]*>")
_PARTS = re.compile(r"(<[^>]*>)")
_NO_CITE = {"code", "pre", "a"}


def safe_href(url: object) -> str:
    """A link target that can only be this site's path or an http(s) page ("" otherwise)."""
    url = str(url or "")
    if (url.startswith("/") and not url.startswith(("//", "/\\"))) or re.match(r"^https?://", url, re.IGNORECASE):
        return url
    return ""


@register.filter(name="href")
def href(url: object) -> str:
    return safe_href(url) or "#"


@register.filter(name="cite")
def cite(html: object, sources: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None) -> SafeString:
    """Citations `[n]` in already-safe HTML become links to source n (numbers without a source stay text).
    `sources` is the list, or a step's data holding it under "sources" (a step may have none)."""
    if isinstance(sources, Mapping):
        sources = sources.get("sources")
    urls = {int(s.get("n", 0)): safe_href(s.get("url")) for s in sources or []}

    def link(match: re.Match[str]) -> str:
        numbers = [int(p) for p in re.split(r"[,;]", match.group(1))]
        if not all(n in urls for n in numbers):
            return match.group(0)
        return "".join(
            f'<sup class="cite"><a href="{escape(urls[n] or f"#source-{n}")}" data-source="{n}">[{n}]</a></sup>'
            for n in numbers)

    # Only text outside tags, code and links: `xs[1]` in a code block and a link's title stay as they are.
    out, inside = [], 0
    for part in _PARTS.split(str(html)):
        tag = _TAG.fullmatch(part)
        if tag:
            name = tag.group(2).lower()
            if name in _NO_CITE:
                inside += -1 if tag.group(1) else (0 if part.endswith("/>") else 1)
            out.append(part)
        else:
            out.append(part if inside > 0 else CITATION.sub(link, part))
    return mark_safe("".join(out))  # noqa: S308 - the input is safe HTML; inserted hrefs are escaped
