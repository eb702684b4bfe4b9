"""The personas app: personas and their codex, the cognitive graph, runs, events and the dashboard."""
from django.apps import AppConfig


class PersonasConfig(AppConfig):
    name = "personas"
    verbose_name = "Personas"
