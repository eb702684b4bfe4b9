"""Model access for A4PS: ModelManager over Ollama or an in-process llama.cpp model."""

from __future__ import annotations

from .config import EmbeddedConfig, ModelsConfig
from .errors import (
    EmbeddedModelError,
    ModelError,
    ModelLockTimeout,
    ModelMissing,
    ModelOutputInvalid,
    OllamaUnavailable,
)
from .manager import CallRecord, ChatResult, ModelManager

__all__ = [
    "CallRecord",
    "ChatResult",
    "EmbeddedConfig",
    "EmbeddedModelError",
    "ModelError",
    "ModelLockTimeout",
    "ModelManager",
    "ModelMissing",
    "ModelOutputInvalid",
    "ModelsConfig",
    "OllamaUnavailable",
]
