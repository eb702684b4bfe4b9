"""`{{ text|markdown }}`: the personas' Markdown (headings, emphasis, lists, code blocks, tables) as
safe HTML. Raw HTML in the text is not passed through, and the result is cleaned by an allow-list
sanitiser as well, so a model's `<script>` or `onclick=` never reaches the page."""
from __future__ import annotations

import nh3
from django import template
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

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
