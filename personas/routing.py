"""Websocket routes of the personas app."""
from django.urls import path

from personas.consumers import EventsConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
]
