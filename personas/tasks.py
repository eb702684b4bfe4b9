"""Huey tasks of the personas app (thin: take ids, call a service)."""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task, on_startup

from personas import services
from personas.runner import lease_seconds, worker_id

log = logging.getLogger(__name__)


@db_task(retries=2, retry_delay=1)
def publish_event(kind: str, source: str = "worker", payload: dict[str, Any] | None = None) -> int:
    """Publish an event from the worker process (used at start-up and by scripts)."""
    return services.event_publish(kind=kind, source=source, payload=payload).pk


@db_task()
def dispatch_runs() -> int:
    """Execute queued runs one after another (and take over runs whose worker died)."""
    done = 0
    while True:
        run = services.run_claim_next(worker=worker_id(), lease_s=lease_seconds())
        if run is None:
            return done
        services.run_execute(run=run)
        done += 1


@db_task(retries=1, retry_delay=2)
def motivate(event_id: int) -> int | None:
    """Let the motivator turn an event into a goal."""
    from personas.models import Event
    from personas.motivator import goal_from_event

    event = Event.objects.filter(pk=event_id).first()
    if event is None:
        return None
    goal = goal_from_event(event=event)
    return goal.pk if goal else None


@db_periodic_task(crontab(minute="*"))
def motivator_tick() -> int | None:
    """Curiosity: a self-reflection goal after a long idle spell."""
    from personas.motivator import goal_reflect_if_idle

    goal = goal_reflect_if_idle()
    return goal.pk if goal else None


@db_periodic_task(crontab(minute="*"))
def dispatch_runs_periodically() -> int:
    """A safety net: picks up runs whose worker died or whose wake-up was missed."""
    return dispatch_runs.call_local()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


_watcher_started = threading.Lock()


@on_startup()
def watch_config_files() -> None:
    """Hand edits of config/*.toml are validated and applied (or rejected, visibly) while running."""
    if not _watcher_started.acquire(blocking=False):
        return  # one watcher per consumer process, however many worker threads start
    from a4ps_site.watch import start_config_watcher
    from personas.codex import config_file_changed

    start_config_watcher(lambda name: _in_db_thread(config_file_changed, name=name))


def _in_db_thread(fn, **kwargs) -> None:
    from django.db import close_old_connections

    try:
        fn(**kwargs)
    except Exception:
        log.exception("handling a config change failed")
    finally:
        close_old_connections()


@on_startup()
def resume_interrupted_runs() -> None:
    """A consumer that starts after a crash resumes the runs its dead predecessor held."""
    from django.db import close_old_connections

    try:
        if services.run_release_dead_workers(host=socket.gethostname(), alive=_pid_alive):
            dispatch_runs()
        elif services.Run.objects.filter(status=services.Run.Status.QUEUED).exists():
            dispatch_runs()
    except Exception:  # the database may not be migrated yet on a first start
        log.exception("could not check for interrupted runs")
    finally:
        close_old_connections()


@db_task()
def pull_model(model: str) -> str:
    """Pull a model into Ollama, showing progress on the Models page; errors become events."""
    import time

    from personas.inference import ModelError
    from personas.llm import model_manager

    last = [0.0]

    def progress(update: dict) -> None:
        now = time.monotonic()
        layer_done = bool(update.get("total")) and update.get("completed") == update.get("total")
        if now - last[0] > 0.25 or layer_done or update.get("status") == "success":
            last[0] = now
            services.model_pull_progress(model=model, update=update)

    try:
        model_manager().pull(model, on_progress=progress)
    except ModelError as exc:
        services.model_pull_progress(model=model, update={"status": "error", "error": str(exc)})
        services.event_publish(kind="models.pull_failed", source="worker",
                               payload={"model": model, "message": f"Pulling {model} failed: {exc}"})
        return "failed"
    services.event_publish(kind="models.pulled", source="worker", payload={"model": model,
                           "message": f"{model} is ready in Ollama"})
    return "ok"
