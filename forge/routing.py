"""Websocket routes of the forge app."""
from django.urls import path

from forge.consumers import EvalRunConsumer, EvalsConsumer, ForgeRequestConsumer

websocket_urlpatterns = [
    path("ws/forge/<int:request_id>/", ForgeRequestConsumer.as_asgi()),
    path("ws/evals/", EvalsConsumer.as_asgi()),
    path("ws/evals/<int:run_id>/", EvalRunConsumer.as_asgi()),
]
