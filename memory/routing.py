"""Websocket routes of the memory app's strategic loop."""
from django.urls import path

from memory.consumers import FineTuneConsumer, FineTunesConsumer

websocket_urlpatterns = [
    path("ws/finetunes/", FineTunesConsumer.as_asgi()),
    path("ws/finetunes/<int:job_id>/", FineTuneConsumer.as_asgi()),
]
