"""A Huey consumer whose ModelManager is the scripted model (for integration tests of the worker).

    python -m tests.scripted_worker      # env: the stack's, plus SCRIPTED_DELAY seconds per call
"""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "a4ps_site.settings")
django.setup()

import re  # noqa: E402

from django.core.management import call_command  # noqa: E402

from personas.inference.embeddings import MiniLMEmbedder  # noqa: E402
from personas.llm import set_model_manager  # noqa: E402
from tests.personas.scripted import ScriptedModel  # noqa: E402


def route(count: int, messages: list[dict]) -> dict:
    """A task that names the library sends BABS to research first; others go straight to analysis."""
    library = "library" in messages[-1]["content"].lower()
    return {"research": library, "reason": "The library may hold it." if library else "The task is self-contained."}


def answer(count: int, messages: list[dict]) -> str:
    """For a task that names the library, with sources in the prompt, ALFRED answers from the first one
    and cites it; else the usual answer."""
    prompt = messages[-1]["content"]
    found = re.search(r"^Sources:\n\[1\] (?:[^:\n]*: )?(.+)$", prompt, re.MULTILINE)
    if not found or "library" not in prompt.lower():  # other tasks keep the usual answer
        return "The answer is 4."
    fact = re.sub(r"^\[[^\]]*\]\s*", "", found.group(1)).strip()
    return f"From the library: {fact[:200]} [1]"


route.wants_messages = True  # type: ignore[attr-defined]
answer.wants_messages = True  # type: ignore[attr-defined]
class StackModel(ScriptedModel):
    """Scripted chat, real embeddings: the worker writes memory where the web process reads it."""

    embedding_model = MiniLMEmbedder.name
    _minilm = MiniLMEmbedder()

    def embed(self, texts: list[str]):  # type: ignore[override]
        return self._minilm.embed(list(texts))


set_model_manager(StackModel({"route": route, "answer": answer}, delay_s=float(os.environ.get("SCRIPTED_DELAY", "0"))))
call_command("run_huey")
