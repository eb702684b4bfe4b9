"""Huey task of eval runs (thin: take the id, call the service)."""
from __future__ import annotations

from huey.contrib.djhuey import db_task

from forge.evals.services import eval_run_execute


@db_task()
def eval_run(run_id: int) -> str | None:
    """Run a queued eval to its end."""
    run = eval_run_execute(run_id=run_id)
    return run.status if run else None
