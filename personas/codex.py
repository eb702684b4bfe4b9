"""Codex services: versions, hand edits picked up live, and amendments that only a person applies."""
from __future__ import annotations

import difflib
import hashlib
import logging
import re
import tomllib
from datetime import timedelta
from typing import Any

import tomlkit
from django.db import transaction
from django.utils import timezone

from a4ps_site.config import ConfigError, app_settings, codex_path, parse_codex
from a4ps_site.files import write_atomically
from personas.events import event_publish
from personas.inference.embeddings import cosine_similarity
from personas.models import CodexAmendment, CodexVersion, Event, Run
from personas.persona_state import persona_sync_from_codex

log = logging.getLogger(__name__)


def codex_settings() -> dict[str, Any]:
    """[codex] in settings.toml, with defaults."""
    data = {"persistent_k": 3, "window_hours": 24, "related_similarity": 0.5, "wait_for_decision": True,
            **app_settings().get("codex", {})}
    if not isinstance(data["persistent_k"], int) or data["persistent_k"] < 1:
        raise ConfigError("codex.persistent_k must be a whole number of at least 1")
    return data


def unified_diff(before: str, after: str, *, label: str = "codex.toml") -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                        f"{label} (before)", f"{label} (after)"))


def with_principle(text: str, persona: str, principle: str) -> str:
    """The codex text with one principle added to a persona: one added line, the rest of the file as it was
    (comments, layout and the list's own formatting kept, so the diff shows only the new principle)."""
    doc = tomlkit.parse(text)
    entry = doc["personas"][persona]
    principles = entry.get("principles")
    if principles is None:
        entry["principles"] = [principle]
    else:
        principles.append(principle)
    return tomlkit.dumps(doc)


def _sentences(text: str) -> list[str]:
    return [" ".join(re.findall(r"[a-z0-9]+", part.lower())) for part in re.split(r"(?<=[.!?;])\s+", text.strip())
            if re.search(r"[a-z0-9]", part.lower())]


def repeats_principles(principle: str, existing: list[str] | tuple[str, ...]) -> bool:
    """Whether a drafted principle only restates principles the persona already has (one of them, or
    several strung together): nothing in it would be new."""
    known = {sentence for text in existing for sentence in _sentences(text)}
    drafted = _sentences(principle)
    return bool(drafted) and all(sentence in known for sentence in drafted)


def amendment_fingerprint(persona: str, principle: str) -> str:
    """Same persona + same words (case, spacing, punctuation aside) = the same amendment."""
    norm = re.sub(r"[^a-z0-9]+", " ", principle.lower()).strip()
    return hashlib.sha256(f"{persona}:{norm}".encode()).hexdigest()


def _next_number() -> int:
    last = CodexVersion.objects.order_by("-number").values_list("number", flat=True).first()
    return (last or 0) + 1


def _broadcast_codex(version: CodexVersion, reason: str) -> None:
    event_publish(kind="codex.changed", source="codex",
                  payload={"version": version.number, "message": f"Codex v{version.number}: {reason}"})


@transaction.atomic
def codex_sync_from_file(*, reason: str = "hand edit of codex.toml") -> CodexVersion | None:
    """Record the codex file as a new version if it changed and is valid; reload the personas.

    An invalid file raises ConfigError and changes nothing (the last good version stays)."""
    path = codex_path()
    text = path.read_text(encoding="utf-8")
    try:
        specs = parse_codex(tomllib.loads(text), source=str(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    latest = CodexVersion.objects.order_by("-number").first()
    if latest and latest.text == text:
        return None
    version = CodexVersion.objects.create(
        number=_next_number(), text=text, diff=unified_diff(latest.text, text) if latest else "", reason=reason[:200]
    )
    persona_sync_from_codex(specs=specs)
    transaction.on_commit(lambda: _broadcast_codex(version, reason))
    return version


# --- amendments ---------------------------------------------------------------------------------

def amendment_evidence(*, run: Run, embed: Any) -> list[int]:
    """Runs with high dissonance in the window whose tasks are related to this run's task.

    Returns their ids (this run included) when there are at least persistent_k of them, else []."""
    conf = codex_settings()
    since = timezone.now() - timedelta(hours=float(conf["window_hours"]))
    run_ids = sorted({int(e.payload.get("run")) for e in Event.objects.filter(
        kind="high_cognitive_dissonance", created__gte=since) if e.payload.get("run")})
    runs = list(Run.objects.filter(pk__in=run_ids).exclude(pk=run.pk).only("id", "task"))
    if len(runs) + 1 < conf["persistent_k"]:
        return []
    vectors = embed([run.task, *[r.task for r in runs]])
    related = [run.pk]
    for other, vec in zip(runs, vectors[1:]):
        if cosine_similarity(vectors[0], vec) >= conf["related_similarity"]:
            related.append(other.pk)
    return related if len(related) >= conf["persistent_k"] else []


def rejected_amendments(*, persona: str | None = None, limit: int = 10) -> list[CodexAmendment]:
    qs = CodexAmendment.objects.filter(status=CodexAmendment.Status.REJECTED).order_by("-id")
    if persona:
        qs = qs.filter(persona=persona)
    return list(qs[:limit])


@transaction.atomic
def amendment_propose(*, persona: str, principle: str, rationale: str, evidence: list[int]) -> CodexAmendment | None:
    """Record ALFRED's draft. Nothing changes in the codex; a person decides in the admin.

    Returns None when the same amendment was already rejected or is already waiting, or when it only
    repeats principles the persona already has."""
    persona = persona.strip().upper()
    principle = principle.strip()
    current = codex_path().read_text(encoding="utf-8")
    specs = parse_codex(tomllib.loads(current))
    if persona not in specs:
        raise ValueError(f"Unknown persona {persona!r}.")
    if not principle:
        raise ValueError("An amendment needs the text of the principle.")
    if repeats_principles(principle, specs[persona].principles):
        log.info("amendment to %s not drafted: it repeats existing principles: %s", persona, principle[:120])
        return None
    fp = amendment_fingerprint(persona, principle)
    if CodexAmendment.objects.filter(fingerprint=fp, status__in=[CodexAmendment.Status.REJECTED,
                                                                  CodexAmendment.Status.PROPOSED]).exists():
        return None
    after = with_principle(current, persona, principle)
    amendment = CodexAmendment.objects.create(
        persona=persona, principle=principle, rationale=rationale.strip() or "(no rationale given)",
        codex_before=current, codex_after=after, diff=unified_diff(current, after), fingerprint=fp,
    )
    amendment.evidence_runs.set(Run.objects.filter(pk__in=evidence))
    event_publish(kind="codex.amendment_proposed", source="ALFRED", payload={
        "amendment": amendment.pk, "persona": persona,
        "message": f"ALFRED proposes an amendment to {persona}: {principle[:120]} — awaiting a decision in the admin"})
    return amendment


@transaction.atomic
def amendment_approve(*, amendment: CodexAmendment, by: Any, comment: str = "") -> CodexVersion:
    """Apply an amendment: rewrite codex.toml atomically, record a version, reload the personas."""
    amendment = CodexAmendment.objects.select_for_update().get(pk=amendment.pk)
    if amendment.status != CodexAmendment.Status.PROPOSED:
        raise ValueError(f"Amendment #{amendment.pk} was already {amendment.status}.")
    path = codex_path()
    current = path.read_text(encoding="utf-8")
    new_text = with_principle(current, amendment.persona, amendment.principle)
    specs = parse_codex(tomllib.loads(new_text), source=str(path))
    version = CodexVersion.objects.create(
        number=_next_number(), text=new_text, diff=unified_diff(current, new_text),
        reason=f"amendment #{amendment.pk} approved by {by}",
    )
    amendment.status = CodexAmendment.Status.APPROVED
    amendment.decided_by = by
    amendment.decided_at = timezone.now()
    amendment.comment = comment.strip()
    amendment.applied_version = version
    amendment.save()
    persona_sync_from_codex(specs=specs)
    # The file is written last, once everything else has succeeded.
    write_atomically(path, new_text)
    event_publish(kind="codex.amendment_approved", source="architect", payload={
        "amendment": amendment.pk, "version": version.number,
        "message": f"Amendment #{amendment.pk} to {amendment.persona} approved: codex v{version.number}"})
    transaction.on_commit(lambda: _broadcast_codex(version, f"amendment #{amendment.pk} applied"))
    return version


@transaction.atomic
def amendment_reject(*, amendment: CodexAmendment, by: Any, comment: str) -> CodexAmendment:
    """Reject an amendment (a comment is required); ALFRED is shown it so it is not proposed again."""
    if not comment or not comment.strip():
        raise ValueError("Say why the amendment is rejected: a comment is required.")
    amendment = CodexAmendment.objects.select_for_update().get(pk=amendment.pk)
    if amendment.status != CodexAmendment.Status.PROPOSED:
        raise ValueError(f"Amendment #{amendment.pk} was already {amendment.status}.")
    amendment.status = CodexAmendment.Status.REJECTED
    amendment.decided_by = by
    amendment.decided_at = timezone.now()
    amendment.comment = comment.strip()
    amendment.save()
    event_publish(kind="codex.amendment_rejected", source="architect", payload={
        "amendment": amendment.pk,
        "message": f"Amendment #{amendment.pk} to {amendment.persona} rejected: {comment[:120]}"})
    return amendment


def amendment_decision(amendment: CodexAmendment) -> dict[str, Any]:
    """What a waiting run is resumed with."""
    return {"amendment": amendment.pk, "status": amendment.status, "comment": amendment.comment}
