"""Websocket routes, collected from each app's routing module."""
from __future__ import annotations

from forge.routing import websocket_urlpatterns as forge_ws
from memory.routing import websocket_urlpatterns as memory_ws
from personas.routing import websocket_urlpatterns as personas_ws

websocket_urlpatterns = [*personas_ws, *forge_ws, *memory_ws]
