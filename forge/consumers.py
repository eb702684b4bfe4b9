"""Websocket consumers of the forge app: a forge request's live page, the Evals page and an eval run's page."""
from __future__ import annotations

from channels.db import database_sync_to_async
from django.template.loader import render_to_string

from a4ps_site.live import LiveConsumer
from a4ps_site.realtime import group_for
from forge import selectors
from forge.evals.models import EvalRun
from forge.evals.selectors import category_table, previous_run
from forge.evals.services import EVALS_GROUP


class ForgeRequestConsumer(LiveConsumer):
    """One forge request: attempts as they finish, BRICK's code as it is written, status and phase."""

    async def resolve_groups(self) -> list[str] | None:
        self.request_id = int(self.scope["url_route"]["kwargs"]["request_id"])
        exists = await database_sync_to_async(selectors.forge_request_exists)(request_id=self.request_id)
        return [group_for("forge", self.request_id)] if exists else None

    async def replay(self, after: int) -> list[str]:
        return await database_sync_to_async(selectors.forge_attempts_html_after)(
            request_id=self.request_id, after_number=after)


class EvalsConsumer(LiveConsumer):
    """The Evals page: run rows change progress and status live."""

    groups_to_join = [EVALS_GROUP]


def _eval_replay(run_id: int, after: int) -> list[str]:
    run = EvalRun.objects.filter(pk=run_id).first()
    if run is None:
        return []
    html = [render_to_string("forge/evals/_result_oob.html", {"result": r, "run": run})
            for r in run.results.filter(pk__gt=after).order_by("pk")]
    return [*html, render_to_string("forge/evals/_head_oob.html", {
        "run": run, "table": category_table(run=run), "previous": previous_run(run=run)})]


class EvalRunConsumer(LiveConsumer):
    """One eval run: its progress header and each item's result as it is judged."""

    async def resolve_groups(self) -> list[str] | None:
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        exists = await database_sync_to_async(EvalRun.objects.filter(pk=self.run_id).exists)()
        return [group_for("eval", self.run_id)] if exists else None

    async def replay(self, after: int) -> list[str]:
        return await database_sync_to_async(_eval_replay)(self.run_id, after)
