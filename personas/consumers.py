"""Websocket consumers of the personas app: the live system log."""
from __future__ import annotations

import json
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from a4ps_site.realtime import EVENTS_GROUP
from personas import selectors
from personas.services import render_event_oob


class EventsConsumer(AsyncWebsocketConsumer):
    """Streams every published event to logged-in dashboards; replays what a reconnecting page missed."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(EVENTS_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(EVENTS_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            data = json.loads(text_data or "{}")
            after = int(data.get("resume_after", -1))
        except (ValueError, TypeError, AttributeError):
            return  # not a resume request; the log is read-only
        if after < 0:
            return
        missed = await database_sync_to_async(selectors.events_after)(after_id=after)
        for event in missed:
            await self.send(text_data=render_event_oob(event.as_message()))

    async def event_created(self, message: dict) -> None:
        await self.send(text_data=message["html"])
