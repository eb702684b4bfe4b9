"""Watches config/ for hand edits and reports which file changed (debounced)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

WATCHED = {"codex.toml", "settings.toml"}
DEBOUNCE_S = 0.3  # editors write a file in several steps; act once it settles


class _Handler(FileSystemEventHandler):
    def __init__(self, callback: Callable[[str], None]) -> None:
        self.callback = callback
        self.timers: dict[str, threading.Timer] = {}
        self.lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in {"modified", "created", "moved", "closed"}:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            name = Path(str(raw)).name if raw else ""
            if name in WATCHED:
                self._schedule(name)

    def _schedule(self, name: str) -> None:
        with self.lock:
            if name in self.timers:
                self.timers[name].cancel()
            timer = threading.Timer(DEBOUNCE_S, self.callback, args=(name,))
            timer.daemon = True
            self.timers[name] = timer
            timer.start()


def start_config_watcher(callback: Callable[[str], None]) -> BaseObserver:
    """Call `callback("codex.toml" | "settings.toml")` after each settled change in the config dir."""
    observer = Observer()
    observer.schedule(_Handler(callback), str(settings.CONFIG_DIR), recursive=False)
    observer.daemon = True
    observer.start()
    return observer
