"""Exceptions raised by the model layer, each with a message a user can act on."""

from __future__ import annotations


class ModelError(RuntimeError):
    """Base class: any failure to get an answer from a model."""


class OllamaUnavailable(ModelError):
    """The Ollama server did not answer (down, wrong host, or timed out while connecting)."""


class ModelMissing(ModelError):
    """The requested model is not present on the backend."""


class ModelOutputInvalid(ModelError):
    """The model answered, but not in the shape the caller required (e.g. junk instead of JSON).

    `content` holds what it did answer and `completion_tokens` what that cost (0 when unknown)."""

    def __init__(self, message: str, *, content: str = "", completion_tokens: int = 0,
                 prompt_tokens: int = 0) -> None:
        super().__init__(message)
        self.content = content
        self.completion_tokens = completion_tokens
        self.prompt_tokens = prompt_tokens


class EmbeddedModelError(ModelError):
    """The in-process model could not be prepared or run (missing or corrupt GGUF, load failure)."""


class ModelLockTimeout(ModelError):
    """Another process held the model lock for longer than we were willing to wait."""
