"""The forge app: sandboxes, the Tool Forge, the live tool registry and fine-tune jobs."""
from django.apps import AppConfig


class ForgeConfig(AppConfig):
    name = "forge"
    verbose_name = "Forge"
