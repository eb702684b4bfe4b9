"""An eval run (one suite, one mode, one model and settings, one commit) and its per-item results."""
from __future__ import annotations

from django.db import models


class EvalRun(models.Model):
    """Items of one suite under one mode; what it ran on is kept so two runs compare item by item."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        CANCELLING = "cancelling"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    suite = models.CharField(max_length=16)
    mode = models.CharField(max_length=16)
    limit = models.PositiveIntegerField(default=0)  # 0 = every item
    item_ids = models.JSONField(default=list)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    model = models.CharField(max_length=300, blank=True)  # persona → model as the run resolved them
    backend = models.CharField(max_length=32, blank=True)  # model backend: embedded or ollama
    sandbox = models.CharField(max_length=32, blank=True)
    settings_digest = models.CharField(max_length=64, blank=True)
    settings = models.JSONField(default=dict, blank=True)  # the forge and model settings it ran with
    commit = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"eval #{self.pk}: {self.suite}/{self.mode} ({self.status})"

    @property
    def pass_rate(self) -> float:
        return self.passed / self.done if self.done else 0.0

    @property
    def pass_pct(self) -> int:
        return round(100 * self.pass_rate)

    @property
    def progress_pct(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def is_active(self) -> bool:
        return self.status in {self.Status.QUEUED, self.Status.RUNNING, self.Status.CANCELLING}


class EvalResult(models.Model):
    """One item of an eval run: pass or fail, its cost, the final code or answer and why it failed."""

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    item_id = models.CharField(max_length=32)
    category = models.CharField(max_length=32)
    style = models.CharField(max_length=16, blank=True)
    passed = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    output = models.TextField(blank=True)
    why = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["run", "item_id"], name="one_result_per_item")]

    def __str__(self) -> str:
        return f"{self.item_id} in eval #{self.run_id}: {'pass' if self.passed else 'fail'}"
