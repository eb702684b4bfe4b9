"""Tools the system forged for itself, their versions, the forge requests and attempts, and tool calls."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models


class Tool(models.Model):
    """A tool in the live registry; what runs is its current version."""

    name = models.CharField(max_length=64, unique=True)  # snake_case: the function's name
    enabled = models.BooleanField(default=True)
    current_version = models.ForeignKey("ToolVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    # "Offer again" on the tool's page: idleness is counted from here (or from a newer current version).
    offered_since = models.DateTimeField(null=True, blank=True)
    # Set on every change (new version, enable, disable, rollback): processes compare it to reload.
    updated = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ToolVersion(models.Model):
    """One tested version of a tool: the function without its tests, the tests, and its schema."""

    tool = models.ForeignKey(Tool, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    code = models.TextField()
    tests = models.TextField(blank=True)
    spec = models.TextField(blank=True)
    schema = models.JSONField(default=dict)  # {"type": "function", "function": {name, description, parameters}}
    created = models.DateTimeField(auto_now_add=True)
    source_run = models.ForeignKey("personas.Run", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="tool_versions")

    class Meta:
        ordering = ["tool", "-number"]
        constraints = [models.UniqueConstraint(fields=["tool", "number"], name="toolversion_unique_number")]

    def __str__(self) -> str:
        return f"{self.tool.name} v{self.number}"

    @property
    def path(self) -> Path:
        """Where the version's code is kept as a file: var/tools/<name>/v<N>.py."""
        return Path(settings.SHARED_DIR) / "tools" / self.tool.name / f"v{self.number}.py"


class ForgeRequest(models.Model):
    """A spec handed to the forge, by BRICK during a run or by a person on the Forge page."""

    class Source(models.TextChoices):
        GRAPH = "graph"
        USER = "user"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    spec = models.TextField()
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.USER)
    run = models.ForeignKey("personas.Run", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="forge_requests")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    phase = models.CharField(max_length=64, blank=True)  # what the forge is doing now, in words
    tool_version = models.ForeignKey(ToolVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="forge_requests")
    error = models.TextField(blank=True)
    # What the forge noted about the tool it registered, a line each: a stated result it fails, a test
    # case of BRICK's it dropped, what it mended in form.
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    # Which worker (node:pid) runs a person's request and until when; a stale lease means it died.
    worker = models.CharField(max_length=128, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"forge request #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in {self.Status.QUEUED, self.Status.RUNNING}

    @property
    def duration_s(self) -> float | None:
        if self.started and self.finished:
            return (self.finished - self.started).total_seconds()
        return None


class ForgeAttempt(models.Model):
    """One try of BRICK at a forge request: the code, the static checks and the sandboxed test run."""

    request = models.ForeignKey(ForgeRequest, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    reply = models.TextField(blank=True)  # the model's whole answer, as written
    code = models.TextField(blank=True)
    tests = models.TextField(blank=True)
    static_ok = models.BooleanField(default=False)
    static_errors = models.JSONField(default=list, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    stdout = models.TextField(blank=True)
    stderr = models.TextField(blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    killed_reason = models.CharField(max_length=32, blank=True)
    backend = models.CharField(max_length=32, blank=True)
    passed = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    model_ms = models.FloatField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["request", "number"]
        constraints = [models.UniqueConstraint(fields=["request", "number"], name="forgeattempt_unique_number")]

    def __str__(self) -> str:
        return f"{self.request_id}#{self.number} {'passed' if self.passed else 'failed'}"


class ToolCall(models.Model):
    """One call of a tool (by a model during a run, or from the tool page), executed in the sandbox."""

    tool_version = models.ForeignKey(ToolVersion, on_delete=models.CASCADE, related_name="calls")
    arguments = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    duration_s = models.FloatField(default=0)
    backend = models.CharField(max_length=32, blank=True)
    run = models.ForeignKey("personas.Run", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="tool_calls")
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.tool_version} call #{self.pk}"


# Eval runs live with their runner in forge/evals/; Django finds the models through this import.
from forge.evals.models import EvalResult, EvalRun  # noqa: E402,F401
