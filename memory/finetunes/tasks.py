"""Huey task of fine-tune jobs (thin: take the id, call the service)."""
from __future__ import annotations

from huey.contrib.djhuey import db_task

from memory.finetunes.services import comparison_execute, finetune_execute


@db_task()
def finetune_run(job_id: int) -> str | None:
    """Train, export and evaluate a queued fine-tune job."""
    job = finetune_execute(job_id=job_id)
    return job.status if job else None


@db_task()
def finetune_compare_run(comparison_id: int) -> str | None:
    """Ask a fine-tune's persona with its base and with its adapter."""
    comparison = comparison_execute(comparison_id=comparison_id)
    return comparison.status if comparison else None
