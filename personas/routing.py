"""Websocket routes of the personas app."""
from django.urls import path

from personas.consumers import EventsConsumer, ModelsConsumer, RunConsumer, RunsConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
    path("ws/runs/", RunsConsumer.as_asgi()),
    path("ws/models/", ModelsConsumer.as_asgi()),
    path("ws/runs/<int:run_id>/", RunConsumer.as_asgi()),
]
