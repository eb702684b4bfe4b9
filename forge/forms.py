"""Forms of the forge app."""
from __future__ import annotations

import json

from django import forms

from forge.config import forge_settings


class ForgeForm(forms.Form):
    spec = forms.CharField(
        widget=forms.Textarea(attrs={
            "rows": 3, "placeholder": "What should the tool do? e.g. add two integers and return the sum",
        }),
        strip=True,
    )

    def clean_spec(self) -> str:
        spec = self.cleaned_data["spec"]
        limit = forge_settings().max_spec_chars
        if len(spec) > limit:
            raise forms.ValidationError(
                f"The spec is {len(spec):,} characters long; the limit is {limit:,}. Shorten it and forge again."
            )
        return spec


class ToolCallForm(forms.Form):
    """Try a tool from its page: arguments as a JSON object."""

    arguments = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), initial="{}", max_length=20_000)

    def clean_arguments(self) -> dict:
        try:
            value = json.loads(self.cleaned_data["arguments"] or "{}")
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Give the arguments as a JSON object, e.g. {"a": 2, "b": 3}.')
        return value
