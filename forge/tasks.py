"""Huey tasks of the forge app (thin: take ids, call a service)."""
from __future__ import annotations

from huey.contrib.djhuey import db_task

from forge import services
from forge.evals.tasks import eval_run  # noqa: F401  (registered with Huey by being imported here)
from forge.models import ForgeRequest


@db_task()
def forge_request_run(request_id: int) -> str | None:
    """Forge the tool a person asked for on the Forge page."""
    request = ForgeRequest.objects.filter(pk=request_id, status=ForgeRequest.Status.QUEUED).first()
    if request is None:
        return None  # gone, or another worker already took it
    # Claim it: only the worker whose update matched runs the loop.
    if not ForgeRequest.objects.filter(pk=request_id, status=ForgeRequest.Status.QUEUED).update(
            status=ForgeRequest.Status.RUNNING):
        return None
    return services.forge_request_execute(request=request).status
