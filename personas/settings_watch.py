"""Hand edits of config/*.toml while A4PS runs: applied from the next graph step, or rejected visibly."""
from __future__ import annotations

from a4ps_site.config import ConfigError, app_settings, config_errors
from personas.codex import codex_settings, codex_sync_from_file
from personas.events import event_publish
from personas.graph import GraphSettings
from personas.llm import models_config


def config_file_changed(*, name: str) -> None:
    """React to a hand edit of config/<name>: apply it, or publish why it was rejected."""
    try:
        if name == "codex.toml":
            codex_sync_from_file()
        elif name == "settings.toml":
            app_settings()
            models_config()
            GraphSettings.from_dict(app_settings().get("graph"))
            codex_settings()
            errors = config_errors()
            if "settings.toml" in errors:
                raise ConfigError(errors["settings.toml"])
            event_publish(kind="config.applied", source="config", payload={"file": name,
                          "message": "settings.toml changed: the new settings apply from the next step"})
    except (ConfigError, ValueError) as exc:
        event_publish(kind="config.rejected", source="config", payload={
            "file": name, "error": str(exc), "message": f"{name} rejected: {exc} — the last good version stays"})
