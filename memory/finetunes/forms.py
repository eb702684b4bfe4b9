"""The Fine-tune form: every hyperparameter, with the engine's defaults and limits."""
from __future__ import annotations

from typing import Any

from django import forms

from memory.finetunes.engine import LIMITS, Hyperparameters
from memory.finetunes.models import default_hyperparameters

_HELP = {
    "lora_r": "LoRA rank",
    "lora_alpha": "scaling: the update is multiplied by alpha / r",
    "lora_dropout": "dropout on the LoRA input",
    "learning_rate": "AdamW step size",
    "epochs": "passes over the training split",
    "max_steps": "stop after at most this many steps (0 = no cap)",
    "batch_size": "examples per step",
    "max_len": "tokens per example (longer ones keep their end)",
    "eval_fraction": "share held out for the base-vs-adapted evaluation (0 here and below: no evaluation)",
    "eval_min_examples": "held out however small the share (up to half the dataset): the promotion gate "
                         "wants 20 comparisons",
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
