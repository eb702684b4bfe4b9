"""Websocket consumers of the personas app: the live system log, the run queue and run pages."""
from __future__ import annotations

from channels.db import database_sync_to_async

from a4ps_site.live import LiveConsumer
from a4ps_site.realtime import DASHBOARD_GROUP, EVENTS_GROUP, MODELS_GROUP, RUNS_GROUP, group_for
from personas import selectors
from personas.events import render_event_oob


class EventsConsumer(LiveConsumer):
    """The dashboard: system log, run queue, persona cards and model status."""

    groups_to_join = [EVENTS_GROUP, DASHBOARD_GROUP]

    async def replay(self, after: int) -> list[str]:
        missed = await database_sync_to_async(selectors.events_after)(after_id=after)
        return [render_event_oob(e.as_message()) for e in missed]


class RunsConsumer(LiveConsumer):
    """The runs list: rows change status live; new runs appear on top."""

    groups_to_join = [RUNS_GROUP]


class ModelsConsumer(LiveConsumer):
    """The Models page: which model is loaded, the call timeline, pull progress."""

    groups_to_join = [MODELS_GROUP]


class RunConsumer(LiveConsumer):
    """One run's live page: steps, streamed tokens, status and dissonance."""

    async def resolve_groups(self) -> list[str] | None:
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        exists = await database_sync_to_async(selectors.run_exists)(run_id=self.run_id)
        return [group_for("run", self.run_id)] if exists else None

    async def replay(self, after: int) -> list[str]:
        return await database_sync_to_async(selectors.run_steps_html_after)(run_id=self.run_id, after_seq=after)
