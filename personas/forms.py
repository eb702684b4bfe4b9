"""Forms of the personas app."""
from __future__ import annotations

from django import forms
from django.conf import settings


class TaskForm(forms.Form):
    task = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What should the personas work on?"}),
        strip=True,
    )

    def clean_task(self) -> str:
        task = self.cleaned_data["task"]
        limit = settings.TASK_MAX_CHARS
        if len(task) > limit:
            raise forms.ValidationError(
                f"The task is {len(task):,} characters long; the limit is {limit:,}. Shorten it and submit again."
            )
        return task
