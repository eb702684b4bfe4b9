"""Writes of golden datasets: examples, the curator's verdicts, JSONL import and export."""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from a4ps_site.config import PERSONA_NAMES
from memory.models import CuratorVerdict, GoldenDataset, GoldenExample
from personas.events import event_publish
from personas.models import Run

log = logging.getLogger(__name__)

ROLES = {"system", "user", "assistant"}
MAX_IMPORT_LINE = 200_000  # characters; a longer line is reported, not read
MAX_IMPORT_ERRORS_SHOWN = 200


# --- datasets and examples ------------------------------------------------------------------------------

def _persona(name: str) -> str:
    persona = (name or "").strip().upper()
    if persona not in PERSONA_NAMES:
        raise ValueError(f"Unknown persona {name!r}: choose one of {', '.join(PERSONA_NAMES)}.")
    return persona


def curated_dataset_name(persona: str) -> str:
    return f"{persona} golden"


def dataset_for_persona(*, persona: str) -> GoldenDataset:
    """The dataset the curator fills for this persona (created on first use)."""
    persona = _persona(persona)
    dataset, _ = GoldenDataset.objects.get_or_create(
        persona=persona, name=curated_dataset_name(persona),
        defaults={"description": f"Runs ALFRED judged exemplary, as {persona}'s turns."},
    )
    return dataset


def dataset_create(*, persona: str, name: str, description: str = "") -> GoldenDataset:
    """A new, empty dataset (for imports or hand-picked examples)."""
    persona = _persona(persona)
    name = (name or "").strip()
    if not name:
        raise ValueError("The dataset needs a name.")
    if GoldenDataset.objects.filter(persona=persona, name=name).exists():
        raise ValueError(f"{persona} already has a dataset named {name!r}.")
    return GoldenDataset.objects.create(persona=persona, name=name[:120], description=description.strip())


def validate_messages(value: Any) -> list[dict[str, str]]:
    """A chat in the export format, or ValueError saying what is wrong with it."""
    if not isinstance(value, list) or not value:
        raise ValueError('"messages" must be a non-empty list')
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise ValueError(f"message {i} is not an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"message {i} has role {role!r} (expected system, user or assistant)")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"message {i} ({role}) has no text content")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise ValueError("there is no assistant message to learn from")
    if out[0]["role"] == "assistant":
        raise ValueError("the chat starts with the assistant: nothing prompts it")
    return out


def chat_fingerprint(messages: list[dict[str, Any]]) -> str:
    """Stable identity of a conversation: roles and whitespace-normalised contents."""
    norm = [[str(m.get("role", "")), " ".join(str(m.get("content", "")).split())] for m in messages]
    return hashlib.sha256(json.dumps(norm, ensure_ascii=False).encode()).hexdigest()


@dataclass
class Judgement:
    """ALFRED's rubric verdict on one run (scores 1..10 per criterion, their mean, a rationale)."""

    scores: dict[str, float]
    total: float | None
    rationale: str
    model: str
    error: str = ""


def _text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages)


def example_add(*, dataset: GoldenDataset, messages: list[dict[str, str]], run: Run | None = None,
                score: float | None = None, rubric: dict[str, Any] | None = None, rationale: str = "",
                source: str = GoldenExample.Source.CURATOR) -> tuple[GoldenExample, bool]:
    """Add a chat to a dataset unless the same chat is already there; returns (example, created)."""
    messages = validate_messages(messages)
    digest = chat_fingerprint(messages)
    existing = GoldenExample.objects.filter(dataset=dataset, fingerprint=digest).first()
    if existing is not None:
        return existing, False
    example = GoldenExample.objects.create(
        dataset=dataset, run=run, source=source, messages=messages, text=_text(messages), score=score,
        rubric=rubric or {}, rationale=rationale, fingerprint=digest,
    )
    return example, True


def example_set_included(*, example: GoldenExample, included: bool) -> GoldenExample:
    """Include the example in exports and fine-tunes, or leave it out (it is kept either way)."""
    GoldenExample.objects.filter(pk=example.pk).update(included=included)
    example.included = included
    return example


@transaction.atomic
def verdict_record(*, run: Run, judgement: Judgement, threshold: float,
                   conversations: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """Store ALFRED's verdict on a run (accepted or not); accepted runs add each persona's chat to that
    persona's curated dataset, skipping chats already there."""
    accepted = judgement.total is not None and not judgement.error and judgement.total >= threshold
    verdict, created = CuratorVerdict.objects.get_or_create(run=run, defaults={
        "scores": judgement.scores, "total": judgement.total, "rationale": judgement.rationale,
        "accepted": accepted, "error": judgement.error, "model": judgement.model[:200],
    })
    outcome = {"verdict": verdict.pk, "accepted": accepted and created, "examples": 0, "duplicates": 0}
    if not created or not accepted:
        return outcome
    now = timezone.now()
    rubric = {**judgement.scores, "total": judgement.total}
    for persona, messages in conversations.items():
        if persona not in PERSONA_NAMES:
            continue
        dataset = dataset_for_persona(persona=persona)
        try:
            _, added = example_add(dataset=dataset, messages=messages, run=run, score=judgement.total,
                                   rubric=rubric, rationale=judgement.rationale)
        except ValueError as exc:  # e.g. an empty reply: not worth learning from
            log.info("run %s: %s's chat not stored: %s", run.pk, persona, exc)
            continue
        outcome["examples" if added else "duplicates"] += 1
        GoldenDataset.objects.filter(pk=dataset.pk).update(last_curated=now)
    event_publish(kind="curator.accepted", source="curator", payload={
        "run": run.pk, "total": judgement.total,
        "message": f"Run #{run.pk} scored {judgement.total:.1f}: {outcome['examples']} golden example(s) added"})
    return outcome


def dataset_export_lines(*, dataset: GoldenDataset) -> Iterator[str]:
    """The included examples as JSONL in chat format, one {"messages": [...]} per line."""
    for messages in dataset.examples.filter(included=True).order_by("id").values_list("messages", flat=True).iterator():
        yield json.dumps({"messages": messages}, ensure_ascii=False) + "\n"


@dataclass
class ImportReport:
    """What an import did: every line is either imported, a duplicate, or an error with its reason."""

    imported: int = 0
    duplicates: int = 0
    blank: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return self.imported + self.duplicates + self.blank + len(self.errors)


def dataset_import_lines(*, dataset: GoldenDataset, lines: Iterable[bytes | str]) -> ImportReport:
    """Import JSONL lines into a dataset: good lines are stored, each bad one is reported with its
    line number and reason; duplicates of chats already in the dataset are counted, not stored twice."""
    report = ImportReport()
    with transaction.atomic():
        for number, raw in enumerate(lines, start=1):
            if isinstance(raw, bytes):
                try:
                    raw = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    report.errors.append((number, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
                    continue
            if not raw.strip():
                report.blank += 1
                continue
            if len(raw) > MAX_IMPORT_LINE:
                report.errors.append((number, f"line is {len(raw):,} characters; the limit is {MAX_IMPORT_LINE:,}"))
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                report.errors.append((number, f"not valid JSON: {exc.msg} at column {exc.colno}"))
                continue
            if not isinstance(obj, dict) or "messages" not in obj:
                report.errors.append((number, 'expected an object with a "messages" list'))
                continue
            try:
                messages = validate_messages(obj["messages"])
            except ValueError as exc:
                report.errors.append((number, str(exc)))
                continue
            score = obj.get("score")
            score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
            _, added = example_add(dataset=dataset, messages=messages, score=score,
                                   source=GoldenExample.Source.IMPORT,
                                   rationale=str(obj.get("rationale", ""))[:2000])
            if added:
                report.imported += 1
            else:
                report.duplicates += 1
        event_publish(kind="dataset.imported", source="architect", payload={
            "dataset": dataset.pk, "imported": report.imported, "errors": len(report.errors),
            "message": (f"Imported {report.imported} example(s) into {dataset.name}; {report.duplicates} "
                        f"duplicate(s), {len(report.errors)} bad line(s)")})
    return report
