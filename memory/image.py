"""The living image: the system's whole live state, snapshotted with dill and restorable."""
from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from a4ps_site.config import app_settings, codex_path
from a4ps_site.files import write_atomically
from memory import imagefile
from memory.finetunes.models import FineTuneJob
from memory.finetunes.selectors import finetune_record
from memory.finetunes.services import persona_model_override
from memory.services import memory_store
from personas.codex import codex_sync_from_file
from personas.events import event_publish
from personas.llm import models_config
from personas.models import CodexVersion, Goal, Persona
from personas.motivator import motivator_settings
from personas.ports import ports

log = logging.getLogger(__name__)

FORMAT = 1


def image_settings() -> dict[str, Any]:
    return {"interval_min": 15, "keep": 10, **app_settings().get("image", {})}


def image_dir() -> Path:
    return settings.SHARED_DIR / "images"


def image_capture() -> dict[str, Any]:
    """Everything that makes this system *this* system right now."""
    codex = CodexVersion.objects.order_by("-number").first()
    goals = Goal.objects.order_by("-id")
    return {
        "format": FORMAT,
        "created": timezone.now().isoformat(),
        "personas": {p.name: dict(p.state) for p in Persona.objects.order_by("order")},
        "codex": {"version": codex.number, "text": codex.text} if codex else None,
        "tools": [t.get("function", {}).get("name") for t in ports().tool_schemas()],
        "memory_versions": memory_store().table_versions(),
        "adapters": _adapters(),
        "motivator": {
            "autonomy": motivator_settings()["autonomy"],
            "goals": {s: goals.filter(status=s).count() for s in Goal.Status.values},
            "last_goal": goals.values_list("created", flat=True).first(),
        },
    }


def _adapters() -> dict[str, Any]:
    """The configured model of each persona and the promoted fine-tune (adapter) it speaks through."""
    models = dict(models_config().personas)
    records = {job.persona: finetune_record(job)
               for job in FineTuneJob.objects.filter(promoted=True).select_related("promoted_by")}
    return {"models": models, "promoted": {p: persona_model_override(p) for p in models}, "records": records}


def image_save(*, reason: str = "manual") -> imagefile.ImageFile:
    """Capture and write an image atomically, keep the newest K, and record an event."""
    contents = image_capture()
    contents["reason"] = reason
    image = imagefile.write_image(image_dir(), imagefile.dumps(contents))
    imagefile.prune(image_dir(), int(image_settings()["keep"]))
    event_publish(kind="image.saved", source="image", payload={
        "image": image.name, "size": image.size, "reason": reason,
        "message": f"Living image saved ({reason}, {image.size / 1024:.1f} KiB)"})
    return image


def image_save_if_due() -> imagefile.ImageFile | None:
    """The periodic save: only when the newest image is older than the interval."""
    newest = next(iter(imagefile.list_images(image_dir())), None)
    due = timedelta(minutes=float(image_settings()["interval_min"]))
    if newest and timezone.now() - newest.created < due:
        return None
    return image_save(reason="periodic")


def image_list() -> list[dict[str, Any]]:
    """Every image, newest first, with what it holds or why it cannot be read."""
    out = []
    for image in imagefile.list_images(image_dir()):
        entry: dict[str, Any] = {"name": image.name, "created": image.created, "size": image.size}
        try:
            contents = imagefile.read_image(image.path)
        except imagefile.CorruptImage as exc:
            entry["error"] = str(exc)
        else:
            entry["contents"] = contents
        out.append(entry)
    return out


def image_load(name: str) -> dict[str, Any]:
    """Read one image by file name (only names of listed images are accepted)."""
    known = {i.name: i.path for i in imagefile.list_images(image_dir())}
    if name not in known:
        raise ValueError(f"No image named {name!r}.")
    return imagefile.read_image(known[name])


@transaction.atomic
def _apply_persona_states(states: dict[str, dict]) -> None:
    for name, state in states.items():
        Persona.objects.filter(name=name).update(state=state)


def image_restore(*, name: str, by: Any = None) -> dict[str, Any]:
    """Roll back to an image: persona states, the codex version and the memory tables."""
    contents = image_load(name)
    _apply_persona_states(contents.get("personas", {}))
    restored = {"personas": sorted(contents.get("personas", {}))}
    codex = contents.get("codex")
    if codex and codex_path().read_text(encoding="utf-8") != codex["text"]:
        write_atomically(codex_path(), codex["text"])
        version = codex_sync_from_file(reason=f"restored from living image {name} (was v{codex['version']})")
        restored["codex"] = version.number if version else codex["version"]
    if contents.get("memory_versions"):
        restored["memory"] = memory_store().restore_versions(contents["memory_versions"])
    event_publish(kind="image.restored", source=str(by or "system"), payload={
        "image": name, "message": f"Living image {name} restored: persona states, codex and memory rolled back"})
    return restored


def image_restore_on_start() -> dict[str, Any]:
    """At start: bring back the personas' live state from the newest good image.

    A corrupt or unreadable newest image falls back to the previous good one, with a warning event."""
    image, contents, warnings = imagefile.latest_good(image_dir())
    for warning in warnings:
        event_publish(kind="image.warning", source="image", payload={
            "message": f"Living image skipped: {warning}. Falling back to an older image.", "error": warning})
    if image is None:
        return {"image": None, "warnings": warnings}
    _apply_persona_states(contents.get("personas", {}))
    event_publish(kind="image.loaded", source="image", payload={
        "image": image.name, "message": f"Live state restored from {image.name}"})
    return {"image": image.name, "warnings": warnings}
