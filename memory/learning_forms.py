"""Forms of the strategic loop: example filters, new dataset, JSONL import, fine-tune hyperparameters."""
from __future__ import annotations

from typing import Any

from django import forms

from a4ps_site.config import PERSONA_NAMES
from forge.finetune import LIMITS, Hyperparameters
from memory.learning_selectors import ExampleFilters
from memory.models import default_hyperparameters

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


_HELP = {
    "lora_r": "LoRA rank",
    "lora_alpha": "scaling: the update is multiplied by alpha / r",
    "lora_dropout": "dropout on the LoRA input",
    "learning_rate": "AdamW step size",
    "epochs": "passes over the training split",
    "max_steps": "stop after at most this many steps (0 = no cap)",
    "batch_size": "examples per step",
    "max_len": "tokens per example (longer ones keep their end)",
    "eval_fraction": "share held out for the base-vs-adapted evaluation (at most 3 examples)",
    "eval_max_new_tokens": "length of each evaluation answer",
    "seed": "makes the split and the order reproducible",
}


class FineTuneForm(forms.Form):
    """Every hyperparameter, editable, with the defaults filled in; validated by Hyperparameters."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        defaults = default_hyperparameters()
        for name, (low, high) in LIMITS.items():
            is_int = isinstance(defaults[name], int)
            field_class = forms.IntegerField if is_int else forms.FloatField
            self.fields[name] = field_class(min_value=low, max_value=high, initial=defaults[name],
                                            help_text=_HELP.get(name, ""))
            if not is_int:
                self.fields[name].widget.attrs["step"] = "any"
        self.fields["target_modules"] = forms.CharField(
            initial=defaults["target_modules"], max_length=300,
            help_text="comma-separated module names that get LoRA matrices")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.errors:
            try:
                self.hyperparameters = Hyperparameters.from_dict(data).to_dict()
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        return data
