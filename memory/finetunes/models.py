"""The fine-tune job: one LoRA fine-tune of a persona's model on a frozen snapshot of a golden dataset."""
from __future__ import annotations

from typing import Any

from django.db import models

from memory.finetunes.engine import Hyperparameters


def default_hyperparameters() -> dict[str, Any]:
    """Small, CPU-friendly LoRA defaults (editable per job): the engine's Hyperparameters defaults."""
    return Hyperparameters().to_dict()


class FineTuneJob(models.Model):
    """One LoRA fine-tune of a persona's model on a frozen snapshot of a golden dataset."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        CANCELLING = "cancelling"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    persona = models.CharField(max_length=16, db_index=True)
    base_model = models.CharField(max_length=500, help_text="The weights trained on: a GGUF file or a model directory.")
    dataset = models.ForeignKey("memory.GoldenDataset", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="jobs")
    snapshot_path = models.CharField(max_length=500, blank=True)
    snapshot_sha256 = models.CharField(max_length=64, blank=True, help_text="Of the frozen examples as trained on.")
    examples = models.PositiveIntegerField(default=0)
    hyperparameters = models.JSONField(default=default_hyperparameters)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss_history = models.JSONField(default=list, blank=True)
    tokens_per_s = models.FloatField(default=0.0)
    log = models.TextField(blank=True)
    adapter_path = models.CharField(max_length=500, blank=True)
    gguf_adapter_path = models.CharField(max_length=500, blank=True)
    evaluation = models.JSONField(default=dict, blank=True)
    promoted = models.BooleanField(default=False, db_index=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Empty when the evaluation showed the adapter better; otherwise why a person promoted it anyway.
    promotion_reason = models.TextField(blank=True)
    # What the persona used before this job was promoted: rollback returns to it.
    previous_job = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    previous_model = models.CharField(max_length=500, blank=True)
    ollama_model = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Which worker (node:pid) trains and until when; a stale lease means it died and another starts over.
    worker = models.CharField(max_length=128, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"fine-tune #{self.pk} of {self.persona} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in {self.Status.QUEUED, self.Status.RUNNING, self.Status.CANCELLING}

    @property
    def progress_pct(self) -> int:
        return round(100 * max(0.0, min(1.0, self.progress)))

    @property
    def last_loss(self) -> float | None:
        return self.loss_history[-1][1] if self.loss_history else None


class ChatComparison(models.Model):
    """One prompt a person sent to a fine-tune's persona with the base model and with the adapter.

    The two answers are shown as A and B in a random order (`adapted_is_a`), revealed after the vote;
    votes count in the job's promotion gate next to ALFRED's verdicts."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Vote(models.TextChoices):
        NONE = "", "not voted"
        A = "A", "A is better"
        B = "B", "B is better"
        TIE = "tie", "tie"

    job = models.ForeignKey(FineTuneJob, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.TextField()
    adapted_is_a = models.BooleanField()
    answer_a = models.TextField(blank=True)
    answer_b = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    vote = models.CharField(max_length=8, choices=Vote.choices, blank=True, default="")
    voter = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"comparison #{self.pk} of fine-tune #{self.job_id}"

    @property
    def is_active(self) -> bool:
        return self.status in {self.Status.QUEUED, self.Status.RUNNING}

    @property
    def label_of_adapted(self) -> str:
        return "A" if self.adapted_is_a else "B"

    @property
    def winner(self) -> str:
        """"adapted", "base", "tie" or "" (not voted), from the vote on the blind labels."""
        if self.vote == self.Vote.TIE:
            return "tie"
        if self.vote in (self.Vote.A, self.Vote.B):
            return "adapted" if self.vote == self.label_of_adapted else "base"
        return ""
