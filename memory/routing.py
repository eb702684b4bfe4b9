"""Websocket routes of the memory app: fine-tune jobs' live pages."""
from django.urls import path

from memory.finetunes.consumers import CompareConsumer, FineTuneConsumer, FineTunesConsumer

websocket_urlpatterns = [
    path("ws/finetunes/", FineTunesConsumer.as_asgi()),
    path("ws/finetunes/<int:job_id>/", FineTuneConsumer.as_asgi()),
    path("ws/finetunes/<int:job_id>/compare/", CompareConsumer.as_asgi()),
]
