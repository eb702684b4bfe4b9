"""Websocket routes, collected from each app's routing module."""
from __future__ import annotations

from personas.routing import websocket_urlpatterns as personas_ws

websocket_urlpatterns = [*personas_ws]
