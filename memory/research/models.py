"""Every page BABS fetched or was refused: what was asked, what came back, where it went in memory."""
from __future__ import annotations

from django.db import models


class WebFetch(models.Model):
    class Status(models.TextChoices):
        STORED = "stored"
        REUSED = "reused"  # the same URL was fetched recently: its memory is used again
        REFUSED = "refused"

    url = models.URLField(max_length=2000)
    final_url = models.URLField(max_length=2000, blank=True)
    title = models.CharField(max_length=500, blank=True)
    query = models.CharField(max_length=500, blank=True)
    run_id = models.IntegerField(null=True, blank=True, db_index=True)
    status = models.CharField(max_length=8, choices=Status.choices)
    reason = models.TextField(blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    memory_id = models.CharField(max_length=64, blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    fetched_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-fetched_at", "-id"]

    def __str__(self) -> str:
        return f"{self.status} {self.url}"
