"""Forms of the personas app."""
from __future__ import annotations

from django import forms


class TaskForm(forms.Form):
    task = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What should the personas work on?"}),
        strip=True,
    )  # the length limit is run_submit's rule, reported on this field by the view


MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$"


class ModelsForm(forms.Form):
    """Backend choice and the persona → model mapping, saved to settings.toml."""

    backend = forms.ChoiceField(choices=[("auto", "auto (Ollama if it answers)"), ("ollama", "ollama"),
                                         ("embedded", "embedded (llama.cpp)")])

    def __init__(self, *args, personas: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.personas = personas
        for name in personas:
            self.fields[f"model_{name}"] = forms.RegexField(
                regex=MODEL_NAME, label=name, max_length=200,
                error_messages={"invalid": "Use a model name like llama3.1:8b (letters, digits, . _ : / - @ +)."},
            )

    def persona_fields(self):
        return [self[f"model_{name}"] for name in self.personas]

    def mapping(self) -> dict[str, str]:
        return {name: self.cleaned_data[f"model_{name}"] for name in self.personas}
