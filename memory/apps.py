"""The memory app: LanceDB memory, curator, golden datasets and the living image."""
from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "memory"
    verbose_name = "Memory"
