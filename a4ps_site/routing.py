"""Websocket routes, collected from each installed app's `routing` module by name — as the URL
configuration names `forge.urls` in `include()` — so the infrastructure imports no app."""
from __future__ import annotations

from importlib import import_module

from django.apps import apps
from django.utils.module_loading import module_has_submodule


def app_websocket_urlpatterns() -> list:
    """Every installed app's `routing.websocket_urlpatterns`, in INSTALLED_APPS order."""
    patterns: list = []
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, "routing"):
            patterns += getattr(import_module(f"{config.name}.routing"), "websocket_urlpatterns", [])
    return patterns


websocket_urlpatterns = app_websocket_urlpatterns()
