"""A bad [forge] value in settings.toml is rejected like a bad codex: a banner, the last good value (or the
defaults, at start) in force, and never a 500 on the Forge page."""
from __future__ import annotations

import os
import time

import pytest
from django.urls import reverse

from a4ps_site.config import app_settings, config_errors
from forge.config import forge_settings
from personas import settings_watch
from personas.models import Event

pytestmark = pytest.mark.django_db


def write(path, text: str) -> None:
    path.write_text(text)
    later = time.time() + 2  # a new mtime even on coarse file systems
    os.utime(path, (later, later))


def with_forge_backend(text: str, value: str) -> str:
    head, forge = text.split("[forge]", 1)
    return head + "[forge]" + forge.replace('backend = "auto"', f'backend = "{value}"', 1)


def test_a_bad_forge_value_edited_live_is_rejected_and_the_last_good_one_stays(config_dir, auth_client):
    path = config_dir / "settings.toml"
    assert forge_settings().backend == "auto"
    write(path, with_forge_backend(path.read_text(), "bogus"))
    settings_watch.config_file_changed(name="settings.toml")
    rejected = Event.objects.get(kind="config.rejected")
    assert "forge.backend='bogus'" in rejected.payload["error"]
    assert forge_settings().backend == "auto"  # the last good value
    page = auth_client.get(reverse("forge"))
    assert page.status_code == 200
    dashboard = auth_client.get(reverse("dashboard")).content.decode()
    assert "Configuration not applied" in dashboard and "bogus" in dashboard


def test_a_bad_forge_value_at_start_uses_the_defaults_and_says_so(config_dir, auth_client):
    path = config_dir / "settings.toml"
    write(path, with_forge_backend(path.read_text(), "bogus"))  # before anything has read this config dir
    assert forge_settings().backend == "auto"  # the section's defaults apply
    assert app_settings()["models"]["backend"] == "auto"  # the good sections still do
    assert "bogus" in config_errors()["settings.toml"]
    assert auth_client.get(reverse("forge")).status_code == 200
    assert "bogus" in auth_client.get(reverse("dashboard")).content.decode()
    write(path, path.read_text().replace('backend = "bogus"', 'backend = "local"'))  # fixed by hand
    assert forge_settings().backend == "local" and "settings.toml" not in config_errors()
