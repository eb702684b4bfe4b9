"""Reads and validates config/settings.toml and config/codex.toml, re-reading them when they change."""
from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

PERSONA_NAMES = ("ALFRED", "BRICK", "ROBIN", "BABS")


class ConfigError(ValueError):
    """A configuration file is missing, is not valid TOML, or holds a bad value."""


@dataclass(frozen=True)
class PersonaSpec:
    name: str
    order: int
    role: str
    title: str
    system_prompt: str
    principles: tuple[str, ...]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def parse_codex(data: dict[str, Any], *, source: str = "codex.toml") -> dict[str, PersonaSpec]:
    """Validate the codex table; every persona needs a role, a system prompt and principles."""
    personas = data.get("personas")
    if not isinstance(personas, dict):
        raise ConfigError(f"{source}: a [personas.NAME] table is required for each persona.")
    missing = [n for n in PERSONA_NAMES if n not in personas]
    if missing:
        raise ConfigError(f"{source}: persona(s) {', '.join(missing)} missing.")
    specs: dict[str, PersonaSpec] = {}
    for name, body in personas.items():
        if name not in PERSONA_NAMES:
            raise ConfigError(f"{source}: unknown persona {name!r} (known: {', '.join(PERSONA_NAMES)}).")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: [personas.{name}] must be a table.")
        for key in ("role", "system_prompt"):
            if not isinstance(body.get(key), str) or not body[key].strip():
                raise ConfigError(f"{source}: personas.{name}.{key} must be a non-empty string.")
        principles = body.get("principles", [])
        if not isinstance(principles, list) or not all(isinstance(p, str) and p.strip() for p in principles):
            raise ConfigError(f"{source}: personas.{name}.principles must be a list of non-empty strings.")
        order = body.get("order", PERSONA_NAMES.index(name) + 1)
        if not isinstance(order, int):
            raise ConfigError(f"{source}: personas.{name}.order must be an integer.")
        specs[name] = PersonaSpec(
            name=name,
            order=order,
            role=body["role"].strip(),
            title=str(body.get("title", body["role"])).strip(),
            system_prompt=body["system_prompt"].strip(),
            principles=tuple(p.strip() for p in principles),
        )
    return specs


# Section checks the apps register in their AppConfig.ready(): name -> check(table or None), which raises
# ValueError naming the bad key. Infrastructure cannot import the apps' settings classes, so they come here.
_section_checks: dict[str, Callable[[Any], Any]] = {}


def register_settings_section(name: str, check: Callable[[Any], Any]) -> None:
    """Validate [name] of settings.toml with `check` whenever the file is read (a bad edit is rejected)."""
    _section_checks[name] = check


def parse_settings(data: dict[str, Any], *, source: str = "settings.toml", lenient: bool = False) -> dict[str, Any]:
    """Validate settings.toml: the [models] basics here, every other registered section by its own check.

    Strict (the default) raises ConfigError naming every bad section. `lenient` (a first read with no
    earlier good version to fall back on) drops the bad sections, so their defaults apply, and keeps
    the error in `data["__errors__"]`."""
    problems: dict[str, str] = {}
    try:
        _check_models(data, source)
    except ConfigError as exc:
        problems["models"] = str(exc)
    for name, check in _section_checks.items():
        try:
            check(data.get(name))
        except (ValueError, TypeError) as exc:
            problems[name] = f"{source}: [{name}] {exc}"
    if not problems:
        return data
    if not lenient:
        raise ConfigError("; ".join(problems.values()))
    kept = {k: v for k, v in data.items() if k not in problems}
    kept["__errors__"] = "; ".join(problems.values()) + " — the defaults of those sections apply"
    return kept


def _check_models(data: dict[str, Any], source: str) -> None:
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{source}: [models] must be a table.")
    backend = models.get("backend", "auto")
    if backend not in {"auto", "ollama", "embedded"}:
        raise ConfigError(f"{source}: models.backend={backend!r} must be auto, ollama or embedded.")
    mapping = models.get("personas", {})
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v.strip() for v in mapping.values()):
        raise ConfigError(f"{source}: [models.personas] must map persona names to model names.")
    unknown = set(mapping) - set(PERSONA_NAMES)
    if unknown:
        raise ConfigError(f"{source}: [models.personas] names unknown persona(s): {', '.join(sorted(unknown))}.")


class _Cached:
    """A parsed file kept until its mtime changes; a bad edit keeps the last good value and its error."""

    def __init__(self, filename: str, parser: Any, *, lenient: bool = False) -> None:
        self.filename = filename
        self.parser = parser
        self.lenient = lenient  # a first read that fails falls back to the parser's lenient mode
        self._lock = threading.Lock()
        self._stamp: tuple[str, float, int] | None = None
        self._value: Any = None
        self.error: str | None = None

    @property
    def path(self) -> Path:
        return Path(settings.CONFIG_DIR) / self.filename

    def get(self) -> Any:
        path = self.path
        try:
            st = path.stat()
            stamp = (str(path), st.st_mtime, st.st_size)
        except FileNotFoundError:
            stamp = (str(path), 0.0, -1)
        with self._lock:
            if self._stamp and self._stamp[0] != stamp[0]:
                self._value = None  # another config dir: nothing read there is known good yet
            if stamp != self._stamp:
                try:
                    self._value = self.parser(_read_toml(path), source=str(path))
                    self.error = None
                except ConfigError as exc:
                    if self._value is None and not self.lenient:
                        raise
                    self.error = str(exc)
                    if self._value is None:  # nothing good to keep yet: the sections that are fine apply
                        try:
                            raw = _read_toml(path)
                        except ConfigError:
                            raw = {}  # not even TOML: every default applies until it is fixed
                        self._value = self.parser(raw, source=str(path), lenient=True)
                        self._value.pop("__errors__", None)
                self._stamp = stamp
            return self._value


_settings_file = _Cached("settings.toml", parse_settings, lenient=True)
_codex_file = _Cached("codex.toml", parse_codex)


def app_settings() -> dict[str, Any]:
    """The current settings.toml contents (validated)."""
    return _settings_file.get()


def codex() -> dict[str, PersonaSpec]:
    """The current codex, persona name → spec."""
    return _codex_file.get()


def codex_path() -> Path:
    return _codex_file.path


def settings_path() -> Path:
    return _settings_file.path


def config_errors() -> dict[str, str]:
    """Errors of the latest hand edits that were rejected (the last good version stays in force)."""
    for cached in (_settings_file, _codex_file):
        try:
            cached.get()  # re-reads a file that changed since the last look
        except ConfigError as exc:
            cached.error = str(exc)
    return {c.filename: c.error for c in (_settings_file, _codex_file) if c.error}


def persona_model(name: str) -> str:
    """The model configured for a persona in settings.toml."""
    return app_settings().get("models", {}).get("personas", {}).get(name, "")
