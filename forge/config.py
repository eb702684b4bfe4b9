"""Validated view of the `[forge]` table of config/settings.toml."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from a4ps_site.config import app_settings
from forge.sandbox import ORDER, Limits

DEFAULT_ALLOWED_IMPORTS = (
    "math", "cmath", "statistics", "re", "json", "datetime", "itertools", "functools", "collections",
    "string", "fractions", "decimal", "operator", "heapq", "bisect", "textwrap", "unicodedata", "typing",
    "dataclasses", "enum", "random", "calendar",
)
# What a sandboxed test or call may take; generous for container start-up on a busy host.
DEFAULT_LIMITS = {"wall_s": 20.0, "cpu_s": 10, "memory_mb": 256, "pids": 32, "file_size_mb": 8,
                  "open_files": 32, "output_bytes": 64 * 1024, "scratch_mb": 32}


@dataclass(frozen=True)
class ForgeSettings:
    """Knobs from settings.toml [forge]; limits from [forge.limits]."""

    max_attempts: int = 3  # BRICK's tries at one spec before the forge gives up
    backend: str = "auto"  # sandbox backend: auto (strongest available) or one of forge.sandbox.ORDER
    max_spec_chars: int = 2000
    max_tokens: int = 384  # per code-writing reply
    temperature: float = 0.2
    allowed_imports: tuple[str, ...] = DEFAULT_ALLOWED_IMPORTS
    idle_after_runs: int = 5  # finished runs without a model calling a tool before BRICK stops being offered it
    edge_cases: bool = False  # BRICK also writes edge-case test cases when the request has examples
    warm_pool: int = 2  # sandboxes a worker keeps started ahead of need (0 = cold starts only)
    limits: Limits = field(default_factory=lambda: Limits(**DEFAULT_LIMITS))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ForgeSettings:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"[forge] has unknown key(s): {', '.join(sorted(unknown))}")
        limits_data = data.pop("limits", {})
        if not isinstance(limits_data, dict):
            raise ValueError("[forge.limits] must be a table")
        try:
            limits = Limits(**{**DEFAULT_LIMITS, **limits_data})
        except TypeError as exc:
            raise ValueError(f"[forge.limits]: {exc}") from None
        if "allowed_imports" in data:
            imports = data["allowed_imports"]
            if not isinstance(imports, list) or not all(isinstance(i, str) and i.isidentifier() for i in imports):
                raise ValueError("forge.allowed_imports must be a list of module names")
            data["allowed_imports"] = tuple(imports)
        values = cls(**data, limits=limits)
        if isinstance(values.max_attempts, bool) or not isinstance(values.max_attempts, int) \
                or not 1 <= values.max_attempts <= 10:
            raise ValueError("forge.max_attempts must be an integer between 1 and 10")
        if values.backend not in ("auto", *ORDER):
            raise ValueError(f"forge.backend={values.backend!r} must be auto or one of {', '.join(ORDER)}")
        if not isinstance(values.max_spec_chars, int) or not 20 <= values.max_spec_chars <= 100_000:
            raise ValueError("forge.max_spec_chars must be an integer between 20 and 100000")
        if not isinstance(values.max_tokens, int) or not 32 <= values.max_tokens <= 8192:
            raise ValueError("forge.max_tokens must be an integer between 32 and 8192")
        if isinstance(values.idle_after_runs, bool) or not isinstance(values.idle_after_runs, int) \
                or not 0 <= values.idle_after_runs <= 10_000:
            raise ValueError("forge.idle_after_runs must be an integer between 0 (never) and 10000")
        if not isinstance(values.edge_cases, bool):
            raise ValueError("forge.edge_cases must be true or false")
        if isinstance(values.warm_pool, bool) or not isinstance(values.warm_pool, int) \
                or not 0 <= values.warm_pool <= 16:
            raise ValueError("forge.warm_pool must be an integer between 0 (cold starts only) and 16")
        if not isinstance(values.temperature, (int, float)) or not 0 <= values.temperature <= 2:
            raise ValueError("forge.temperature must be between 0 and 2")
        return values


def forge_settings() -> ForgeSettings:
    """The current [forge] settings (re-read when settings.toml changes)."""
    return ForgeSettings.from_dict(app_settings().get("forge"))
