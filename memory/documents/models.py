"""A document in the library: the file as uploaded (kept for re-indexing) and its state in memory."""
from __future__ import annotations

from django.db import models


class Document(models.Model):
    """One uploaded file. Its chunks live in the memory store under `memory_id` (one summary, the chunks
    below it); the row says how far ingesting got and why it failed, if it did."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        INGESTING = "ingesting"
        INDEXED = "indexed"
        FAILED = "failed"

    name = models.CharField(max_length=255, help_text="The file name as uploaded.")
    title = models.CharField(max_length=500, blank=True)
    kind = models.CharField(max_length=16)  # text | markdown | html | pdf | docx
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, unique=True, help_text="Of the file's bytes: the same file is kept once.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)  # 0..1 while ingesting
    stage = models.CharField(max_length=200, blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    chars = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    memory_id = models.CharField(max_length=64, blank=True)
    # The memory an ingest is writing: removed at start-up if the product stopped half-way through.
    pending_memory_id = models.CharField(max_length=64, blank=True)
    embedding_model = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    uploaded_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    indexed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.title or self.name

    @property
    def busy(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.INGESTING)

    @property
    def progress_pct(self) -> int:
        return round(100 * self.progress)
