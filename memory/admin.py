"""Admin for the strategic loop: datasets, examples, curator verdicts and fine-tune jobs."""
from __future__ import annotations

from django.contrib import admin

from memory.models import CuratorVerdict, FineTuneJob, GoldenDataset, GoldenExample


@admin.register(GoldenDataset)
class GoldenDatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "persona", "created", "last_curated")
    list_filter = ("persona",)


@admin.register(GoldenExample)
class GoldenExampleAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "score", "included", "source", "run", "created")
    list_filter = ("included", "source", "dataset__persona")
    search_fields = ("text", "rationale")
    raw_id_fields = ("run",)
    readonly_fields = ("fingerprint", "created")


@admin.register(CuratorVerdict)
class CuratorVerdictAdmin(admin.ModelAdmin):
    list_display = ("run", "total", "accepted", "model", "judged_at")
    list_filter = ("accepted",)
    raw_id_fields = ("run",)


@admin.register(FineTuneJob)
class FineTuneJobAdmin(admin.ModelAdmin):
    list_display = ("id", "persona", "status", "progress", "promoted", "created", "finished")
    list_filter = ("status", "persona", "promoted")
    raw_id_fields = ("dataset", "previous_job", "created_by")
    readonly_fields = ("log", "loss_history", "evaluation")
