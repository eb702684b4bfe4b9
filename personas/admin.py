"""Admin: personas, events, and the codex amendments that only a person may approve or reject."""
from __future__ import annotations

import difflib

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from personas import codex as codex_services
from personas.models import CodexAmendment, CodexVersion, Event, Goal, Persona, Run


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    list_display = ("name", "role", "title", "updated")
    readonly_fields = ("name", "role", "title", "system_prompt", "principles", "updated")
    fields = ("name", "role", "title", "system_prompt", "principles", "state", "updated")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # personas come from the codex


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "source", "created")
    list_filter = ("kind", "source")
    search_fields = ("kind", "source")
    readonly_fields = ("kind", "source", "payload", "created")


@admin.register(CodexVersion)
class CodexVersionAdmin(admin.ModelAdmin):
    list_display = ("number", "reason", "created")
    readonly_fields = ("number", "text", "diff", "reason", "created")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class DecisionForm(forms.ModelForm):
    """The change page of an amendment: a decision and, for a rejection, the reason."""

    decision = forms.ChoiceField(choices=[("", "— keep pending —"), ("approve", "Approve and apply"),
                                          ("reject", "Reject")], required=False)

    class Meta:
        model = CodexAmendment
        fields = ["comment"]

    def clean(self):
        data = super().clean()
        if data.get("decision") == "reject" and not (data.get("comment") or "").strip():
            self.add_error("comment", "A comment is required to reject an amendment: say why.")
        return data


@admin.register(CodexAmendment)
class CodexAmendmentAdmin(admin.ModelAdmin):
    form = DecisionForm
    list_display = ("id", "persona", "short_principle", "status", "created", "decided_by")
    list_filter = ("status", "persona")
    readonly_fields = ("persona", "principle", "rationale", "status", "side_by_side", "evidence", "decided_by",
                       "decided_at", "applied_version", "created")
    fieldsets = (
        (None, {"fields": ("persona", "principle", "rationale", "status", "evidence")}),
        ("Change to codex.toml", {"fields": ("side_by_side",)}),
        ("Decision", {"fields": ("decision", "comment", "decided_by", "decided_at", "applied_version")}),
    )
    actions = ["approve_selected"]

    class Media:
        css = {"all": ["css/admin-diff.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # ALFRED drafts amendments; people decide

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # rejections are remembered

    @admin.display(description="principle")
    def short_principle(self, obj: CodexAmendment) -> str:
        return obj.principle[:80]

    @admin.display(description="side-by-side diff")
    def side_by_side(self, obj: CodexAmendment) -> str:
        table = difflib.HtmlDiff(wrapcolumn=70).make_table(
            obj.codex_before.splitlines(), obj.codex_after.splitlines(), "codex.toml now", "with the amendment",
            context=True, numlines=3,
        )
        return mark_safe(table.replace('class="diff"', 'class="diff-table"'))  # HtmlDiff escapes its input

    @admin.display(description="evidence runs")
    def evidence(self, obj: CodexAmendment) -> str:
        runs = obj.evidence_runs.order_by("id")
        if not runs:
            return "—"
        return format_html_join(
            ", ", '<a href="{}">#{} {}</a>',
            ((reverse("run_detail", args=[r.pk]), r.pk, r.task[:50]) for r in runs),
        )

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj and obj.status != CodexAmendment.Status.PROPOSED:
            fields.append("comment")
        return fields

    def get_fieldsets(self, request: HttpRequest, obj=None):
        sets = super().get_fieldsets(request, obj)
        if obj and obj.status != CodexAmendment.Status.PROPOSED:
            sets = tuple((name, {"fields": tuple(f for f in opts["fields"] if f != "decision")}) for name, opts in sets)
        return sets

    def save_model(self, request: HttpRequest, obj: CodexAmendment, form, change: bool) -> None:
        decision = form.cleaned_data.get("decision")
        try:
            if decision == "approve":
                version = codex_services.amendment_approve(amendment=obj, by=request.user,
                                                           comment=form.cleaned_data.get("comment", ""))
                messages.success(request,
                                 f"Applied: codex v{version.number}. The personas use it from their next step.")
            elif decision == "reject":
                codex_services.amendment_reject(amendment=obj, by=request.user, comment=form.cleaned_data["comment"])
                messages.success(request, "Rejected. ALFRED will not propose it again.")
        except ValueError as exc:
            messages.error(request, str(exc))
        # Nothing else on an amendment is editable: the services above are the only writers.

    def response_change(self, request: HttpRequest, obj: CodexAmendment):
        return HttpResponseRedirect(reverse("admin:personas_codexamendment_change", args=[obj.pk]))

    @admin.action(description="Approve and apply the selected amendments")
    def approve_selected(self, request: HttpRequest, queryset) -> None:
        for amendment in queryset.order_by("id"):
            try:
                version = codex_services.amendment_approve(amendment=amendment, by=request.user)
                messages.success(request, f"Amendment #{amendment.pk} applied as codex v{version.number}.")
            except ValueError as exc:
                messages.error(request, str(exc))


@admin.register(Goal)
class GoalAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "short_text", "created", "run")
    list_filter = ("kind", "status")
    readonly_fields = ("kind", "text", "source_event", "status", "run", "created", "decided_at")

    @admin.display(description="goal")
    def short_text(self, obj: Goal) -> str:
        return obj.text[:90]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "source", "created", "max_dissonance")
    list_filter = ("status", "source")
    readonly_fields = [f.name for f in Run._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


