"""The live consumer base: every page's websocket is a ~10-line subclass of LiveConsumer."""
from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer


class LiveConsumer(AsyncWebsocketConsumer):
    """Logged-in sockets only; joins its groups and forwards server-rendered partials ("ui.html").

    Subclasses name their groups (`groups_to_join`, or `resolve_groups()` returning None for a missing
    object) and, when a page can miss updates, what to resend after a reconnect (`replay()`)."""

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

    async def ui_html(self, message: dict[str, Any]) -> None:
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
