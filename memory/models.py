"""Golden datasets curated from the best runs, the curator's verdicts, and LoRA fine-tune jobs."""
from __future__ import annotations

from django.db import models


class GoldenDataset(models.Model):
    """One persona's collection of exemplary turns (curated from runs, imported, or both)."""

    persona = models.CharField(max_length=16, db_index=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_curated = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["persona", "name"]
        constraints = [models.UniqueConstraint(fields=["persona", "name"], name="golden_dataset_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.persona})"


class GoldenExample(models.Model):
    """A persona's turns in chat format, with the context it saw, and why it was judged good."""

    class Source(models.TextChoices):
        CURATOR = "curator"
        IMPORT = "import"

    dataset = models.ForeignKey(GoldenDataset, on_delete=models.CASCADE, related_name="examples")
    run = models.ForeignKey("personas.Run", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="golden_examples")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.CURATOR)
    messages = models.JSONField(default=list)
    # All message contents joined: what the text search looks in (JSON text escapes non-ASCII).
    text = models.TextField(blank=True)
    score = models.FloatField(null=True, blank=True, db_index=True)
    rubric = models.JSONField(default=dict, blank=True)
    rationale = models.TextField(blank=True)
    included = models.BooleanField(default=True, db_index=True)
    # SHA-256 of the normalised messages: the same conversation is stored once per dataset.
    fingerprint = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "fingerprint"], name="golden_example_unique_fingerprint"),
        ]

    def __str__(self) -> str:
        return f"example #{self.pk} in {self.dataset_id}"

    @property
    def prompt_preview(self) -> str:
        user = next((m.get("content", "") for m in self.messages if m.get("role") == "user"), "")
        return user

    @property
    def answer_preview(self) -> str:
        answers = [m.get("content", "") for m in self.messages if m.get("role") == "assistant"]
        return answers[-1] if answers else ""


class CuratorVerdict(models.Model):
    """ALFRED's judgement of one finished run; kept for rejected runs too, so no run is judged twice."""

    run = models.OneToOneField("personas.Run", on_delete=models.CASCADE, related_name="curator_verdict")
    scores = models.JSONField(default=dict, blank=True)
    total = models.FloatField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    accepted = models.BooleanField(default=False, db_index=True)
    error = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True)
    judged_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"verdict on run #{self.run_id}: {self.total}"


def default_hyperparameters() -> dict:
    """Small, CPU-friendly LoRA defaults (editable per job)."""
    return {
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "learning_rate": 2e-4,
        "epochs": 1,
        "max_steps": 40,
        "batch_size": 1,
        "max_len": 512,
        "eval_fraction": 0.1,
        "eval_max_new_tokens": 64,
        "target_modules": "q_proj,k_proj,v_proj,o_proj",
        "seed": 0,
    }


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
    dataset = models.ForeignKey(GoldenDataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    snapshot_path = models.CharField(max_length=500, blank=True)
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
    # What the persona used before this job was promoted: rollback returns to it.
    previous_job = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    previous_model = models.CharField(max_length=500, blank=True)
    ollama_model = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

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
