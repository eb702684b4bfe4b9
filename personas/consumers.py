"""Websocket consumers of the personas app: the live system log, the run queue and run pages."""
from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from a4ps_site.realtime import DASHBOARD_GROUP, EVENTS_GROUP, MODELS_GROUP, RUNS_GROUP, group_for
from personas import selectors
from personas.services import render_event_oob


class LiveConsumer(AsyncWebsocketConsumer):
    """Logged-in sockets only; joins its groups and forwards server-rendered partials ("ui.html")."""

    groups_to_join: list[str] = []

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.joined = await self.resolve_groups()
        if self.joined is None:
            await self.close(code=4404)
            return
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def resolve_groups(self) -> list[str] | None:
        return list(self.groups_to_join)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", None) or []:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def ui_html(self, message: dict) -> None:
        await self.send(text_data=message["html"])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """A reconnecting page sends {"resume_after": n}: replay what it missed from the database."""
        try:
            data = json.loads(text_data or "{}")
            after = int(data.get("resume_after", -1))
        except (ValueError, TypeError, AttributeError):
            return  # not a resume request; these sockets are read-only
        if after >= 0:
            for html in await self.replay(after):
                await self.send(text_data=html)

    async def replay(self, after: int) -> list[str]:
        return []


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
