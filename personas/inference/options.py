"""The options of one chat request, shared by the model manager and every backend."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChatOptions:
    """What a chat asks for besides its messages.

    `tools`: JSON-schema function specs (normalised); `json_schema`: constrain the reply to this
    schema; `on_token`: receives text pieces as they are generated; `max_tokens` / `temperature`:
    None leaves the backend's own default; `seed`: the sampler's seed, so that a sampled reply can be
    drawn again (None: the backend picks one per request)."""

    tools: list[dict[str, Any]] | None = None
    json_schema: dict[str, Any] | None = None
    on_token: Callable[[str], None] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
