"""Environment helpers reject bad values; production refuses a default secret."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from a4ps_site.env import envbool, envchoice, envint, envlist

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("raw,expected", [("1", True), ("TRUE", True), ("on", True), ("0", False), ("no", False)])
def test_envbool_accepts_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert envbool("X_FLAG") is expected


def test_envbool_rejects_garbage_naming_the_variable(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        envbool("X_FLAG")


def test_envint_rejects_non_numbers_and_out_of_range(monkeypatch):
    monkeypatch.setenv("X_PORT", "eighty")
    with pytest.raises(ImproperlyConfigured, match="whole number"):
        envint("X_PORT", 1)
    monkeypatch.setenv("X_PORT", "70000")
    with pytest.raises(ImproperlyConfigured, match="out of range"):
        envint("X_PORT", 1, min_value=1, max_value=65535)
    monkeypatch.setenv("X_PORT", "8001")
    assert envint("X_PORT", 1, min_value=1, max_value=65535) == 8001


def test_envlist_and_envchoice(monkeypatch):
    monkeypatch.setenv("X_HOSTS", " a , b ,")
    assert envlist("X_HOSTS", []) == ["a", "b"]
    monkeypatch.setenv("X_HOSTS", " , ")
    with pytest.raises(ImproperlyConfigured):
        envlist("X_HOSTS", [])
    monkeypatch.setenv("X_LAYER", "carrier-pigeon")
    with pytest.raises(ImproperlyConfigured, match="redis"):
        envchoice("X_LAYER", "redis", {"redis", "memory"})


def _import_settings(tmp_path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("A4PS_", "DJANGO_", "REDIS_URL"))}
    clean.update(A4PS_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-c", "import a4ps_site.settings as s; print(s.DEBUG, s.BROKER_URL)"],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60,
    )


def test_production_refuses_a_missing_or_default_secret(tmp_path):
    res = _import_settings(tmp_path, A4PS_PRODUCTION="1")
    assert res.returncode != 0
    assert "A4PS_SECRET_KEY" in res.stderr
    res = _import_settings(tmp_path, A4PS_PRODUCTION="1", A4PS_SECRET_KEY="django-insecure-" + "x" * 40)
    assert res.returncode != 0
    res = _import_settings(tmp_path, A4PS_PRODUCTION="1", A4PS_SECRET_KEY="k" * 50)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("False")


def test_development_generates_and_keeps_a_secret(tmp_path):
    assert _import_settings(tmp_path).returncode == 0
    secret = (tmp_path / "secret_key").read_text()
    assert len(secret) >= 40
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert _import_settings(tmp_path).returncode == 0
    assert (tmp_path / "secret_key").read_text() == secret


def test_bad_redis_url_and_port_are_rejected(tmp_path):
    res = _import_settings(tmp_path, REDIS_URL="http://localhost:6379")
    assert res.returncode != 0 and "REDIS_URL" in res.stderr
    res = _import_settings(tmp_path, A4PS_PORT="0")
    assert res.returncode != 0 and "A4PS_PORT" in res.stderr
    res = _import_settings(tmp_path, REDIS_URL="redis://10.0.0.5:6379/0")
    assert res.returncode == 0 and "redis://10.0.0.5:6379/0" in res.stdout


def test_debug_is_off_unless_asked_for(tmp_path):
    res = _import_settings(tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("False")
    res = _import_settings(tmp_path, A4PS_DEBUG="1")
    assert res.stdout.startswith("True")


@pytest.mark.django_db
def test_a_missing_page_is_a_plain_404_without_the_url_list(auth_client):
    response = auth_client.get("/no/such/page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "There is nothing at this address" in body and "URLconf" not in body
