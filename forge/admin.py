"""Admin of the forge app: tools, versions, forge requests with their attempts, tool calls."""
from __future__ import annotations

from django.contrib import admin

from forge.models import ForgeAttempt, ForgeRequest, Tool, ToolCall, ToolVersion


class ToolVersionInline(admin.TabularInline):
    model = ToolVersion
    fields = ("number", "spec", "created", "source_run")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Tool)
class ToolAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "current_version", "updated")
    list_filter = ("enabled",)
    inlines = [ToolVersionInline]


class ForgeAttemptInline(admin.TabularInline):
    model = ForgeAttempt
    fields = ("number", "passed", "backend", "duration_s", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(ForgeRequest)
class ForgeRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "source", "spec", "tool_version", "created")
    list_filter = ("status", "source")
    inlines = [ForgeAttemptInline]


@admin.register(ToolCall)
class ToolCallAdmin(admin.ModelAdmin):
    list_display = ("id", "tool_version", "ok", "duration_s", "run", "created")
    list_filter = ("ok",)
