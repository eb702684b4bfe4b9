"""Golden datasets curated from the best runs and the curator's verdicts (fine-tune jobs: memory/finetunes)."""
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


class VerdictLabel(models.Model):
    """A person's own judgement of a run ALFRED judged: a thumb (good enough to learn from or not) and,
    optionally, their 1–10 on each rubric criterion. Compared with the verdict, it calibrates the judge."""

    verdict = models.ForeignKey(CuratorVerdict, on_delete=models.CASCADE, related_name="labels")
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="+")
    thumb = models.SmallIntegerField(null=True, blank=True, help_text="1 = good, -1 = not good, empty = no thumb")
    scores = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["verdict", "user"], name="verdict_label_one_per_person")]

    def __str__(self) -> str:
        return f"label of verdict #{self.verdict_id} by {self.user_id}"


# Fine-tune jobs and documents live with the rest of their capability; Django finds the models through
# these imports.
from memory.documents.models import Document  # noqa: E402,F401
from memory.finetunes.models import ChatComparison, FineTuneJob, default_hyperparameters  # noqa: E402,F401
from memory.research.models import WebFetch  # noqa: E402,F401
