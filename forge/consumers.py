"""Websocket consumers of the forge app: a forge request's live page."""
from __future__ import annotations

from channels.db import database_sync_to_async

from a4ps_site.live import LiveConsumer
from a4ps_site.realtime import group_for
from forge import selectors


class ForgeRequestConsumer(LiveConsumer):
    """One forge request: attempts as they finish, BRICK's code as it is written, status and phase."""

    async def resolve_groups(self) -> list[str] | None:
        self.request_id = int(self.scope["url_route"]["kwargs"]["request_id"])
        exists = await database_sync_to_async(selectors.forge_request_exists)(request_id=self.request_id)
        return [group_for("forge", self.request_id)] if exists else None

    async def replay(self, after: int) -> list[str]:
        return await database_sync_to_async(selectors.forge_attempts_html_after)(
            request_id=self.request_id, after_number=after)
