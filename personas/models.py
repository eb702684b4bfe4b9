"""Personas and the persisted system event log."""
from __future__ import annotations

from django.db import models


class Persona(models.Model):
    """One of the four reasoning personas, seeded from the codex."""

    name = models.CharField(max_length=32, unique=True)
    order = models.PositiveSmallIntegerField(default=0)
    role = models.CharField(max_length=64)
    title = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField()
    principles = models.JSONField(default=list, blank=True)
    # Live, mutable state (mood, counters …) that the living image snapshots.
    state = models.JSONField(default=dict, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name


class Event(models.Model):
    """Something the system did or noticed; shown live in the system log."""

    kind = models.CharField(max_length=64, db_index=True)
    source = models.CharField(max_length=64, default="system")
    payload = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["kind", "-created"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} from {self.source}"

    def as_message(self) -> dict:
        """The JSON-safe form carried by broadcasts (also what the log partial renders)."""
        return {
            "id": self.pk,
            "kind": self.kind,
            "source": self.source,
            "payload": self.payload,
            "created": self.created.isoformat(),
        }
