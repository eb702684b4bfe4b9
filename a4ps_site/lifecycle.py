"""Steps the apps add to the process supervisor (`manage.py up`), registered in their AppConfig.ready().

The supervisor is infrastructure and imports no app; it runs whatever was registered for a moment:
- "broker_up": the broker answers, no worker or web process runs yet (e.g. restore the living image);
- "serving": the web process listens (e.g. announce the start in the system log);
- "stopping": a clean shutdown is under way, children still running (e.g. save the living image).
- "restarted": the supervisor restarted a crashed child; such a step is called with the child's
  name and its exit code (e.g. record it in the system log).
A step returns a line for the console (or None); a step that raises is reported and the rest go on,
except at "broker_up", where the error stops the start-up.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

Moment = Literal["broker_up", "serving", "stopping", "restarted"]
Step = Callable[..., "str | None"]

_steps: dict[str, list[tuple[str, Step]]] = {"broker_up": [], "serving": [], "stopping": [], "restarted": []}


def register(moment: Moment, name: str, step: Step) -> None:
    """Add `step` to `moment` once (registering the same name again replaces it)."""
    steps = _steps[moment]
    steps[:] = [(n, s) for n, s in steps if n != name]
    steps.append((name, step))


def steps(moment: Moment) -> list[tuple[str, Step]]:
    """The steps registered for `moment`, in registration order."""
    return list(_steps[moment])
