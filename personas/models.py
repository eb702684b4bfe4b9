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


class CodexVersion(models.Model):
    """One applied state of the codex (config/codex.toml), in full, with the diff from the last one."""

    number = models.PositiveIntegerField(unique=True)
    text = models.TextField()
    diff = models.TextField(blank=True)
    reason = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"codex v{self.number}"


class Run(models.Model):
    """One task worked through the cognitive graph."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLING = "cancelling"
        CANCELLED = "cancelled"
        WAITING = "waiting"  # paused until a person decides on a codex amendment

    class Source(models.TextChoices):
        ARCHITECT = "architect"  # a person
        MOTIVATOR = "motivator"  # the system's own goals
        EVAL = "eval"  # an eval run of the tasks suite (graph mode): its own memory, never stored

    task = models.TextField()
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.ARCHITECT)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    final_answer = models.TextField(blank=True)
    error = models.TextField(blank=True)
    max_dissonance = models.FloatField(null=True, blank=True)
    codex_version = models.PositiveIntegerField(null=True, blank=True)
    last_seq = models.PositiveIntegerField(default=0)
    # Which consumer holds the run (host:pid) and until when; a stale lease means it died.
    worker = models.CharField(max_length=128, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    waiting_on = models.ForeignKey("CodexAmendment", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="waiting_runs")
    # Per-run options a person chose (see personas.runs.RunOptions) and the run this one follows up.
    options = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="follow_ups")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"run #{self.pk} ({self.status})"

    @property
    def thread_id(self) -> str:
        return f"run-{self.pk}"

    @property
    def duration_s(self) -> float | None:
        if self.started and self.finished:
            return (self.finished - self.started).total_seconds()
        return None

    @property
    def is_active(self) -> bool:
        return self.status in {self.Status.QUEUED, self.Status.RUNNING, self.Status.CANCELLING, self.Status.WAITING}

    def answer_step(self) -> RunStep | None:
        """The step holding ALFRED's final answer (its data says whether it is a fallback)."""
        return self.steps.filter(kind="answer").order_by("-seq").first()

    def stored_memory(self) -> str | None:
        """The id of the memory this run wrote, unless it was removed since."""
        step = self.steps.filter(kind="memory").order_by("-seq").first()
        if not step or not step.data.get("memory") or step.content.startswith("Removed from memory"):
            return None
        return str(step.data["memory"])


class RunStep(models.Model):
    """One node update of a run: who spoke, what kind of contribution, and what it cost."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    seq = models.PositiveIntegerField()
    # Deterministic per node execution, so a node re-run after a crash updates, never duplicates.
    key = models.CharField(max_length=64)
    node = models.CharField(max_length=32)
    persona = models.CharField(max_length=16, blank=True)
    kind = models.CharField(max_length=24)
    content = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    dissonance = models.FloatField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    model_ms = models.FloatField(default=0)
    duration_ms = models.FloatField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="runstep_unique_seq"),
            models.UniqueConstraint(fields=["run", "key"], name="runstep_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.persona} {self.kind}"


class ModelCall(models.Model):
    """One chat call to a model, for the swap timeline."""

    model = models.CharField(max_length=200)
    persona = models.CharField(max_length=16, blank=True)
    backend = models.CharField(max_length=16)
    load_ms = models.FloatField(default=0)
    total_ms = models.FloatField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    tokens_per_s = models.FloatField(default=0)
    ok = models.BooleanField(default=True)
    error = models.TextField(blank=True)
    started = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.persona or '-'} {self.model} via {self.backend}{'' if self.ok else ' (failed)'}"


class ApiToken(models.Model):
    """A bearer token for the JSON API (scripts); only its hash is stored."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"


class CodexAmendment(models.Model):
    """A change to one persona's principles, drafted by ALFRED; only a person can apply it."""

    class Status(models.TextChoices):
        PROPOSED = "proposed"
        APPROVED = "approved"
        REJECTED = "rejected"

    persona = models.CharField(max_length=16)
    principle = models.TextField(help_text="The principle to add to the persona's codex entry.")
    rationale = models.TextField()
    codex_before = models.TextField()
    codex_after = models.TextField()
    diff = models.TextField()
    fingerprint = models.CharField(max_length=64, db_index=True)
    evidence_runs = models.ManyToManyField(Run, related_name="amendments", blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED, db_index=True)
    decided_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)
    applied_version = models.ForeignKey(CodexVersion, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"amendment #{self.pk} to {self.persona} ({self.status})"


class Goal(models.Model):
    """A goal the motivator set itself from an event (or from idleness)."""

    class Kind(models.TextChoices):
        SYNTHESIS = "synthesis"  # after high dissonance
        EXPLORATION = "exploration"  # after a new tool
        REFLECTION = "reflection"  # after idle time

    class Status(models.TextChoices):
        PROPOSED = "proposed"  # waiting for a person (autonomy = ask)
        QUEUED = "queued"  # submitted as a run
        DISMISSED = "dismissed"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    text = models.TextField()
    source_event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="goals")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED, db_index=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="goals")
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["source_event", "kind"], name="goal_once_per_event")]

    def __str__(self) -> str:
        return f"{self.kind} goal #{self.pk} ({self.status})"
