"""Huey tasks of the personas app (thin: take ids, call a service)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task, on_startup

from a4ps_site.cluster import once_per_period, pid_alive, worker_id
from a4ps_site.throttle import Throttle
from a4ps_site.watch import start_config_watcher
from personas import runs
from personas.events import event_publish
from personas.inference import ModelError
from personas.inference.embedded_backend import remove_stale_socket_dirs
from personas.llm import model_manager, model_pull_progress
from personas.models import Event, Run
from personas.motivator import goal_from_event, goal_reflect_if_idle
from personas.runner import lease_seconds
from personas.settings_watch import config_file_changed

log = logging.getLogger(__name__)


@db_task(retries=2, retry_delay=1)
def publish_event(kind: str, source: str = "worker", payload: dict[str, Any] | None = None) -> int:
    """Publish an event from the worker process (used at start-up and by scripts)."""
    return event_publish(kind=kind, source=source, payload=payload).pk


WAKE_HOPS = 10  # how often a wake-up that reached a busy node is passed on (the queue picks a consumer)


@db_task()
def dispatch_runs(hops: int = 0) -> int:
    """Execute queued runs one after another (and take over runs whose worker died).

    With several nodes the wake-up may reach a node already running a run: it is passed on a second
    later, a few times, so an idle node takes the queued run; the periodic safety net catches the rest."""
    done = 0
    while True:
        run = runs.run_claim_next(worker=worker_id(), lease_s=lease_seconds())
        if run is None:
            break
        runs.run_execute(run=run)
        done += 1
    if not done and hops < WAKE_HOPS and Run.objects.filter(status=Run.Status.QUEUED).exists():
        dispatch_runs.schedule(args=(hops + 1,), delay=1)
    return done


@db_task(retries=1, retry_delay=2)
def motivate(event_id: int) -> int | None:
    """Let the motivator turn an event into a goal."""
    event = Event.objects.filter(pk=event_id).first()
    if event is None:
        return None
    goal = goal_from_event(event=event)
    return goal.pk if goal else None


@db_periodic_task(crontab(minute="*"))
@once_per_period("motivator_tick", 60)
def motivator_tick() -> int | None:
    """Curiosity: a self-reflection goal after a long idle spell."""
    goal = goal_reflect_if_idle()
    return goal.pk if goal else None


@db_periodic_task(crontab(minute="*"))
def dispatch_runs_periodically() -> int:
    """A safety net: picks up runs whose worker died or whose wake-up was missed. Unlike the other
    periodic jobs it fires on every worker: each node may take a run, and a claim is exclusive."""
    return dispatch_runs.call_local(WAKE_HOPS)


_watcher_started = threading.Lock()


@on_startup()
def watch_config_files() -> None:
    """Hand edits of config/*.toml are validated and applied (or rejected, visibly) while running."""
    if not _watcher_started.acquire(blocking=False):
        return  # one watcher per consumer process, however many worker threads start
    start_config_watcher(lambda name: _in_db_thread(config_file_changed, name=name))


def _in_db_thread(fn: Callable[..., Any], **kwargs: Any) -> None:
    try:
        fn(**kwargs)
    except Exception:
        log.exception("handling a config change failed")
    finally:
        close_old_connections()


@on_startup()
def resume_interrupted_runs() -> None:
    """A consumer that starts after a crash resumes the runs its dead predecessor held, and removes the
    private model-server directories dead processes left in the temp dir."""
    removed = remove_stale_socket_dirs(pid_alive)
    if removed:
        log.info("removed %d model-server dir(s) of stopped processes: %s", len(removed), ", ".join(removed))
    try:
        if runs.run_release_dead_workers():
            dispatch_runs()
        elif Run.objects.filter(status=Run.Status.QUEUED).exists():
            dispatch_runs()
    except Exception:  # the database may not be migrated yet on a first start
        log.exception("could not check for interrupted runs")
    finally:
        close_old_connections()


@db_task()
def pull_model(model: str) -> str:
    """Pull a model into Ollama, showing progress on the Models page; errors become events."""
    throttle = Throttle()

    def progress(update: dict[str, Any]) -> None:
        layer_done = bool(update.get("total")) and update.get("completed") == update.get("total")
        if throttle.ready(force=layer_done or update.get("status") == "success"):
            model_pull_progress(model=model, update=update)

    try:
        model_manager().pull(model, on_progress=progress)
    except ModelError as exc:
        model_pull_progress(model=model, update={"status": "error", "error": str(exc)})
        event_publish(kind="models.pull_failed", source="worker",
                               payload={"model": model, "message": f"Pulling {model} failed: {exc}"})
        return "failed"
    event_publish(kind="models.pulled", source="worker", payload={"model": model,
                           "message": f"{model} is ready in Ollama"})
    return "ok"


# --- what the kernel's events set in motion (subscribed in PersonasConfig.ready()) ---------------------

def on_run_queued(event: Event) -> None:
    """A task was queued: wake the dispatcher."""
    dispatch_runs()


def on_amendment_decided(event: Event) -> None:
    """A person decided on an amendment: the runs waiting for it go back to the queue and resume."""
    amendment = (event.payload or {}).get("amendment")
    if amendment is not None:
        runs.run_requeue_waiting(amendment_id=int(amendment))
    dispatch_runs()


def on_motivating_event(event: Event) -> None:
    """High dissonance or a new tool: the motivator may set a goal."""
    motivate(event.pk)
