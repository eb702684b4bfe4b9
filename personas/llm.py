"""The process-wide ModelManager, configured from settings.toml, recording every call."""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

from django.conf import settings

from a4ps_site.config import app_settings
from personas.inference import CallRecord, ModelManager, ModelsConfig

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
    from personas.services import model_call_record

    try:
        model_call_record(record=record)
    except Exception:  # the timeline must never break a model call
        log.exception("could not record a model call")


def _on_status(status: dict[str, Any]) -> None:
    from personas.services import model_status_broadcast

    try:
        model_status_broadcast(status=status)
    except Exception:
        log.exception("could not broadcast a model status change")


def _override_for(persona: str) -> dict[str, Any] | None:
    """A promoted fine-tune for this persona, if any (promote/rollback apply from the next call)."""
    from memory.datasets import persona_model_override

    return persona_model_override(persona)


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


def set_model_manager(manager: Any) -> None:
    """Replace the shared manager (tests inject a scripted model here)."""
    global _manager, _config_key
    with _lock:
        _manager = manager
        _config_key = models_config() if manager is not None else None
