"""Websocket routes of the forge app."""
from django.urls import path

from forge.consumers import ForgeRequestConsumer

websocket_urlpatterns = [
    path("ws/forge/<int:request_id>/", ForgeRequestConsumer.as_asgi()),
]
