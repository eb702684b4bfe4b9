"""The process-wide ModelManager, configured from settings.toml, and what it records: the call timeline,
the loaded-model status, pull progress and the saved persona → model mapping."""
from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

import tomlkit
from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string

from a4ps_site.config import app_settings, parse_settings, settings_path
from a4ps_site.files import write_atomically
from a4ps_site.realtime import DASHBOARD_GROUP, MODELS_GROUP, broadcast
from personas.events import event_publish
from personas.inference import CallRecord, ModelManager, ModelsConfig
from personas.models import ModelCall
from personas.ports import ports

log = logging.getLogger(__name__)

_lock = threading.Lock()
_manager: Any = None
_config_key: Any = None


def models_config() -> ModelsConfig:
    data = dict(app_settings().get("models", {}))
    if os.environ.get("OLLAMA_HOST"):
        data["ollama_host"] = os.environ["OLLAMA_HOST"]
    return ModelsConfig.from_dict(data)


def _on_call(record: CallRecord) -> None:
    try:
        model_call_record(record=record)
    except Exception:  # the timeline must never break a model call
        log.exception("could not record a model call")


def _on_status(status: dict[str, Any]) -> None:
    try:
        model_status_broadcast(status=status)
    except Exception:
        log.exception("could not broadcast a model status change")


def _override_for(persona: str) -> dict[str, Any] | None:
    """A promoted fine-tune for this persona, if any (promote/rollback apply from the next call)."""
    return ports().model_override(persona)


def model_manager() -> Any:
    """The shared ModelManager; rebuilt when the [models] settings change."""
    global _manager, _config_key
    with _lock:
        config = models_config()
        if _manager is None or config != _config_key:
            if _manager is not None and hasattr(_manager, "close"):
                _manager.close()
            # With the broker available the model lock spans every consumer on every host.
            lock_url = None if settings.HUEY.get("immediate") else settings.BROKER_URL
            _manager = ModelManager(config, var_dir=settings.VAR_DIR, lock_url=lock_url,
                                    on_call=_on_call, on_status=_on_status, override_for=_override_for)
            _config_key = config
        return _manager


PRODUCT_NOT_RUNNING = ("The product is not running: the model is shared through its broker. Start it with "
                       "`python3 a4ps.py run`, then run this again.")


def model_reachable() -> bool:
    """False when every model call of this process would fail before it starts: the model is shared
    through the product's broker (its lock lives there) and the broker does not answer."""
    reachable = getattr(getattr(model_manager(), "lock", None), "reachable", None)
    return bool(reachable()) if callable(reachable) else True


def set_model_manager(manager: Any) -> None:
    """Replace the shared manager (tests inject a scripted model here)."""
    global _manager, _config_key
    with _lock:
        _manager = manager
        _config_key = models_config() if manager is not None else None


# --- what the manager records ------------------------------------------------------------------------

def model_call_record(*, record: CallRecord) -> ModelCall:
    """Keep one model call for the swap timeline and show it on the Models page."""
    call = ModelCall.objects.create(
        model=record.model[:200], persona=record.persona or "", backend=record.backend, load_ms=record.load_ms,
        total_ms=record.total_ms, prompt_tokens=record.prompt_tokens, completion_tokens=record.completion_tokens,
        tokens_per_s=record.tokens_per_s, ok=record.ok, error=record.error, started=record.started_at,
    )
    html = render_to_string("personas/_model_call_oob.html", {"call": call})
    transaction.on_commit(lambda: broadcast(MODELS_GROUP, "ui.html", html=html))
    return call


def model_status_broadcast(*, status: dict[str, Any]) -> None:
    """Tell open pages which model is loaded now (and remember it for pages opened later)."""
    # Rewritten at every load and unload: atomic, but not worth an fsync.
    write_atomically(settings.SHARED_DIR / "model_status.json", json.dumps(status), durable=False)
    html = render_to_string("personas/_model_status_oob.html", {"status": status})
    broadcast(DASHBOARD_GROUP, "ui.html", html=html)
    broadcast(MODELS_GROUP, "ui.html", html=html)


def model_pull_progress(*, model: str, update: dict[str, Any]) -> None:
    """Show a pull's progress bar on the Models page."""
    html = render_to_string("personas/_pull_oob.html", {"model": model, "u": update})
    broadcast(MODELS_GROUP, "ui.html", html=html)


def models_settings_save(*, backend: str, mapping: dict[str, str], embedded: dict[str, str] | None = None) -> None:
    """Write the backend choice, the persona → model mapping and the embedded backend's persona → packaged
    model or GGUF (an empty value: the default model) into settings.toml (validated, atomic)."""
    path = settings_path()
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    models = doc.setdefault("models", tomlkit.table())
    models["backend"] = backend
    personas = models.setdefault("personas", tomlkit.table())
    for name, model in mapping.items():
        personas[name] = model.strip()
    if embedded is not None:
        emb = models.setdefault("embedded", tomlkit.table())
        chosen = emb.setdefault("persona_models", tomlkit.table())
        for name, model in embedded.items():
            if model.strip():
                chosen[name] = model.strip()
            elif name in chosen:
                del chosen[name]
    data = doc.unwrap()
    parse_settings(data)
    ModelsConfig.from_dict(data.get("models"))  # raises ValueError naming the bad key
    write_atomically(path, tomlkit.dumps(doc))
    event_publish(kind="models.configured", source="architect", payload={
        "backend": backend, "message": f"Model settings saved: backend {backend}, " +
        ", ".join(f"{k} → {v}" for k, v in mapping.items()) +
        ("; embedded: " + ", ".join(f"{k} → {v or 'default'}" for k, v in embedded.items()) if embedded else "")})
