"""Huey task of fine-tune jobs (thin: take the id, call the service)."""
from __future__ import annotations

from huey.contrib.djhuey import db_task

from memory.finetunes.services import finetune_execute


@db_task()
def finetune_run(job_id: int) -> str | None:
    """Train, export and evaluate a queued fine-tune job."""
    job = finetune_execute(job_id=job_id)
    return job.status if job else None
