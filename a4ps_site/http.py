"""Small HTTP helpers shared by every app's views."""
from __future__ import annotations

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """The request type of every view: django-htmx's middleware sets `request.htmx` on each one."""

    htmx: HtmxDetails


def safe_next_url(request: HttpRequest, fallback: str) -> str:
    """The form's `next` target when it points into this site (same host, same scheme), else `fallback`."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return fallback
