"""Forms of golden datasets: example filters, new dataset, JSONL import."""
from __future__ import annotations

from django import forms

from a4ps_site.config import PERSONA_NAMES
from memory.datasets.selectors import ExampleFilters

PERSONA_CHOICES = [(p, p) for p in PERSONA_NAMES]


class ExampleFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    persona = forms.ChoiceField(required=False, choices=[("", "any"), *PERSONA_CHOICES])
    score_min = forms.FloatField(required=False, min_value=0, max_value=10, label="Score ≥")
    score_max = forms.FloatField(required=False, min_value=0, max_value=10, label="Score ≤")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    included = forms.ChoiceField(required=False, choices=[("", "any"), ("yes", "included"), ("no", "excluded")])

    def filters(self) -> ExampleFilters:
        """The valid part of the filters; an invalid field is ignored (and shown as an error)."""
        data = self.cleaned_data if self.is_valid() else {
            k: v for k, v in getattr(self, "cleaned_data", {}).items() if k not in self.errors}
        return ExampleFilters(
            q=(data.get("q") or "").strip(), persona=data.get("persona") or "",
            score_min=data.get("score_min"), score_max=data.get("score_max"),
            date_from=data.get("date_from"), date_to=data.get("date_to"), included=data.get("included") or "",
        )


class DatasetCreateForm(forms.Form):
    persona = forms.ChoiceField(choices=PERSONA_CHOICES)
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ImportForm(forms.Form):
    file = forms.FileField(label="JSONL file", help_text='One {"messages": [...]} object per line.')
