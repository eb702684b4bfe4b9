"""Writes of the strategic loop: golden datasets and examples, JSONL import/export, fine-tune jobs, promote/rollback."""
from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from a4ps_site.config import PERSONA_NAMES, app_settings
from a4ps_site.realtime import broadcast, group_for
from memory.curator import Judgement, fingerprint
from memory.models import CuratorVerdict, FineTuneJob, GoldenDataset, GoldenExample, default_hyperparameters
from personas.models import Run
from personas.services import event_publish

log = logging.getLogger(__name__)

FINETUNES_GROUP = "finetunes"  # rows of the Fine-tunes page
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


def _text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages)


def example_add(*, dataset: GoldenDataset, messages: list[dict[str, str]], run: Run | None = None,
                score: float | None = None, rubric: dict[str, Any] | None = None, rationale: str = "",
                source: str = GoldenExample.Source.CURATOR) -> tuple[GoldenExample, bool]:
    """Add a chat to a dataset unless the same chat is already there; returns (example, created)."""
    messages = validate_messages(messages)
    digest = fingerprint(messages)
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


# --- fine-tune jobs ----------------------------------------------------------------------------------

def finetune_settings() -> dict[str, Any]:
    raw = app_settings().get("finetune", {})
    return raw if isinstance(raw, dict) else {}


def finetune_dir(job_id: int) -> Path:
    return Path(settings.VAR_DIR) / "finetune" / str(job_id)


def base_model_for(persona: str) -> str:
    """The weights a persona's fine-tune starts from: `[finetune] base_model_dir` when set (any model
    directory or GGUF), else the GGUF the embedded backend answers this persona with."""
    override = str(finetune_settings().get("base_model_dir", "") or "").strip()
    if override:
        return override
    embedded = app_settings().get("models", {}).get("embedded", {}) or {}
    per_persona = (embedded.get("persona_models") or {}).get(persona, "")
    if per_persona or embedded.get("gguf_path"):
        return str(Path(per_persona or embedded["gguf_path"]).expanduser())
    from personas.inference.embedded_backend import PACKAGED_GGUF_NAME

    # Assembled lazily by the job (seconds of I/O) rather than in the web request.
    return str(Path(settings.VAR_DIR) / "models" / PACKAGED_GGUF_NAME)


def finetune_create(*, dataset: GoldenDataset, hyperparameters: dict[str, Any], user: Any = None) -> FineTuneJob:
    """Freeze the dataset's included examples into var/finetune/<job>/data.jsonl and queue the job."""
    from forge.finetune import Hyperparameters

    hyper = Hyperparameters.from_dict({**default_hyperparameters(), **hyperparameters})
    if not dataset.examples.filter(included=True).exists():
        raise ValueError(f"{dataset.name} has no included examples to train on.")
    with transaction.atomic():
        job = FineTuneJob.objects.create(
            persona=dataset.persona, base_model=base_model_for(dataset.persona), dataset=dataset,
            hyperparameters=hyper.to_dict(), created_by=user if getattr(user, "pk", None) else None,
        )
        folder = finetune_dir(job.pk)
        folder.mkdir(parents=True, exist_ok=True)
        snapshot = folder / "data.jsonl"
        count = 0
        with open(snapshot, "w", encoding="utf-8") as fh:
            for line in dataset_export_lines(dataset=dataset):
                fh.write(line)
                count += 1
        job.snapshot_path, job.examples = str(snapshot), count
        job.log = _log_line(f"Queued: {count} example(s) of {dataset.name} frozen into {snapshot}.")
        job.save(update_fields=["snapshot_path", "examples", "log"])
        event_publish(kind="finetune.queued", source="architect", payload={
            "job": job.pk, "message": f"Fine-tune #{job.pk} of {job.persona} queued ({count} examples)"})
        transaction.on_commit(lambda: finetune_broadcast(job_id=job.pk))
        transaction.on_commit(lambda: _enqueue_finetune(job.pk))
    return job


def _enqueue_finetune(job_id: int) -> None:
    from memory.tasks import finetune_run

    finetune_run(job_id)


def _log_line(text: str) -> str:
    return f"[{timezone.now():%H:%M:%S}] {text}\n"


def finetune_render(*, job: FineTuneJob) -> dict[str, str]:
    """The job's status partial (job page) and its row (Fine-tunes page), as out-of-band swaps."""
    from memory.learning_selectors import loss_chart

    context = {"job": job, "chart": loss_chart(job.loss_history), "oob": True}
    return {
        "status": render_to_string("memory/finetune_status.html", context),
        "row": render_to_string("memory/finetune_row.html", context),
    }


def finetune_broadcast(*, job_id: int) -> None:
    """Push the job's current state to its page and the Fine-tunes list."""
    job = FineTuneJob.objects.filter(pk=job_id).first()
    if job is None:
        return
    html = finetune_render(job=job)
    broadcast(group_for("finetune", job.pk), "ui.html", html=html["status"])
    broadcast(FINETUNES_GROUP, "ui.html", html=html["row"])


def _update(job_id: int, *, log_text: str | None = None, **fields: Any) -> None:
    """Persist progress (and a log line) and broadcast it after commit."""
    with transaction.atomic():
        job = FineTuneJob.objects.select_for_update().get(pk=job_id)
        for key, value in fields.items():
            setattr(job, key, value)
        if log_text:
            job.log += _log_line(log_text)
        job.save()
        transaction.on_commit(lambda: finetune_broadcast(job_id=job_id))


def finetune_cancel(*, job: FineTuneJob) -> FineTuneJob:
    """Cancel a queued job at once, or ask a running one to stop before its next step."""
    with transaction.atomic():
        job = FineTuneJob.objects.select_for_update().get(pk=job.pk)
        if job.status == FineTuneJob.Status.QUEUED:
            job.status, job.finished = FineTuneJob.Status.CANCELLED, timezone.now()
            job.log += _log_line("Cancelled before it started.")
        elif job.status == FineTuneJob.Status.RUNNING:
            job.status = FineTuneJob.Status.CANCELLING
            job.log += _log_line("Cancel requested: stopping before the next step.")
        else:
            raise ValueError(f"Fine-tune #{job.pk} is {job.status}; only queued or running jobs can be cancelled.")
        job.save(update_fields=["status", "finished", "log"])
        transaction.on_commit(lambda: finetune_broadcast(job_id=job.pk))
    return job


def _claim(job_id: int) -> FineTuneJob | None:
    with transaction.atomic():
        job = FineTuneJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != FineTuneJob.Status.QUEUED:
            return None  # cancelled meanwhile, or another worker has it
        job.status, job.started = FineTuneJob.Status.RUNNING, timezone.now()
        job.log += _log_line("Started.")
        job.save(update_fields=["status", "started", "log"])
        event_publish(kind="finetune.started", source="worker",
                      payload={"job": job.pk, "message": f"Fine-tune #{job.pk} of {job.persona} started"})
        transaction.on_commit(lambda: finetune_broadcast(job_id=job_id))
    return job


def _resolve_base(job: FineTuneJob) -> Path:
    from personas.inference.embedded_backend import PACKAGED_GGUF_NAME, ensure_packaged_gguf

    path = Path(job.base_model)
    if path.name == PACKAGED_GGUF_NAME and path.parent == Path(settings.VAR_DIR) / "models":
        return ensure_packaged_gguf(path.parent)
    return path


# Training reports every step; the page needs a few updates a second at most.
_BROADCAST_EVERY_S = 0.25
TRAIN_SHARE = 0.9  # of the progress bar; conversion and evaluation take the rest


def finetune_execute(*, job_id: int) -> FineTuneJob | None:
    """Run a queued job to its end: train, export the llama.cpp adapter, evaluate on the held-out split.
    Errors and cancellation are recorded on the job; the work folder keeps the snapshot."""
    from forge import finetune as ft

    job = _claim(job_id)
    if job is None:
        return None
    work_dir = finetune_dir(job.pk)
    last = [0.0]
    history: list[list[float]] = []

    def on_step(info: ft.StepInfo) -> None:
        history.append([info.step, round(info.loss, 5)])
        now = time.monotonic()
        if now - last[0] < _BROADCAST_EVERY_S and info.step != info.total_steps:
            return
        last[0] = now
        line = f"step {info.step}/{info.total_steps}  loss {info.loss:.4f}  {info.tokens_per_s:.0f} tok/s"
        _update(job.pk, step=info.step, total_steps=info.total_steps, loss_history=list(history),
                progress=TRAIN_SHARE * info.step / info.total_steps, tokens_per_s=round(info.tokens_per_s, 1),
                log_text=line)

    def should_stop() -> bool:
        return FineTuneJob.objects.filter(pk=job.pk, status=FineTuneJob.Status.CANCELLING).exists()

    def log_line(text: str) -> None:
        _update(job.pk, log_text=text)

    try:
        hyper = ft.Hyperparameters.from_dict(job.hyperparameters)
        base = _resolve_base(job)
        outcome = ft.fine_tune(base_model=base, snapshot=Path(job.snapshot_path), work_dir=work_dir, hyper=hyper,
                               on_step=on_step, should_stop=should_stop, log=log_line)
        _update(job.pk, adapter_path=str(outcome.adapter_dir),
                gguf_adapter_path=str(outcome.gguf_adapter or ""), progress=0.95,
                tokens_per_s=round(outcome.train.tokens_per_s, 1))
        evaluation = evaluation_judge(comparisons=outcome.comparisons, persona=job.persona)
        status, error = FineTuneJob.Status.SUCCEEDED, ""
    except ft.Cancelled as exc:
        status, error, evaluation = FineTuneJob.Status.CANCELLED, "", {}
        log_line(f"Cancelled ({exc}).")
        shutil.rmtree(work_dir / "adapter", ignore_errors=True)
    except Exception as exc:  # recorded on the job and shown on its page
        log.exception("fine-tune %s failed", job.pk)
        status, error, evaluation = FineTuneJob.Status.FAILED, f"{type(exc).__name__}: {exc}", {}
    with transaction.atomic():
        job = FineTuneJob.objects.select_for_update().get(pk=job.pk)
        job.status, job.error, job.finished = status, error, timezone.now()
        if history:
            job.loss_history = history
            job.step = int(history[-1][0])
        if evaluation:
            job.evaluation = evaluation
        if status == FineTuneJob.Status.SUCCEEDED:
            job.progress = 1.0
        job.log += _log_line({"succeeded": "Finished.", "cancelled": "Stopped.", "failed": f"Failed: {error}"}[status])
        job.save()
        event_publish(kind=f"finetune.{status}", source="worker", payload={
            "job": job.pk, "message": f"Fine-tune #{job.pk} of {job.persona} {status}" + (f": {error}" if error else "")})
        transaction.on_commit(lambda: finetune_broadcast(job_id=job.pk))
    return job


EVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"better": {"type": "string", "enum": ["A", "B", "tie"]}, "reason": {"type": "string"}},
    "required": ["better", "reason"],
}


def evaluation_judge(*, comparisons: list[dict[str, str]], persona: str, model: Any = None) -> dict[str, Any]:
    """ALFRED compares base and adapted answers per held-out prompt (shown as A/B, order alternating so
    position does not decide); returns the rows with verdicts and a tally."""
    from personas.inference import ModelError
    from personas.llm import model_manager

    tally = {"adapted": 0, "base": 0, "tie": 0, "unjudged": 0}
    rows = []
    for i, row in enumerate(comparisons):
        adapted_first = i % 2 == 1
        a, b = (row["adapted"], row["base"]) if adapted_first else (row["base"], row["adapted"])
        messages = [
            {"role": "system", "content": "You are ALFRED, the supervisor and critic of the team."},
            {"role": "user", "content": (
                f"A prompt {persona} received:\n{row['prompt'][:3000]}\n\nA reference answer judged exemplary:\n"
                f"{row['reference'][:2000]}\n\nAnswer A:\n{a or '(empty)'}\n\nAnswer B:\n{b or '(empty)'}\n\n"
                "Which answer is better for the person asking, closer in quality to the reference? "
                "Reply as JSON: better = A, B or tie, and a one-sentence reason.")},
        ]
        verdict: dict[str, Any]
        try:
            result = (model or model_manager()).chat("ALFRED", messages, json_schema=EVAL_SCHEMA, max_tokens=160,
                                                    temperature=0)
            parsed = result.parsed if isinstance(result.parsed, dict) else {}
            label = parsed.get("better")
            if label not in ("A", "B", "tie"):
                raise ValueError(f"ALFRED's verdict could not be read: {result.content[:200]!r}")
            winner = "tie" if label == "tie" else ("adapted" if (label == "A") == adapted_first else "base")
            verdict = {"better": winner, "reason": str(parsed.get("reason", "")).strip(),
                       "model": getattr(result, "model", "")}
        except (ModelError, ValueError) as exc:
            winner = "unjudged"
            verdict = {"better": "unjudged", "reason": str(exc)}
        tally[winner] += 1
        rows.append({**row, "verdict": verdict})
    return {"examples": rows, "tally": tally}


# --- promote and rollback --------------------------------------------------------------------------

def _describe(job: FineTuneJob | None) -> str:
    return f"fine-tune #{job.pk}" if job else "the base model"


@transaction.atomic
def finetune_promote(*, job: FineTuneJob) -> FineTuneJob:
    """Make the persona answer with this job's adapter; the model it used until now is kept for rollback."""
    job = FineTuneJob.objects.select_for_update().get(pk=job.pk)
    if job.status != FineTuneJob.Status.SUCCEEDED:
        raise ValueError(f"Fine-tune #{job.pk} is {job.status}; only a succeeded job can be promoted.")
    if job.promoted:
        raise ValueError(f"Fine-tune #{job.pk} is already {job.persona}'s model.")
    if not job.gguf_adapter_path or not Path(job.gguf_adapter_path).is_file():
        raise ValueError(f"Fine-tune #{job.pk} has no llama.cpp adapter (its base was not a GGUF), so the "
                         "model manager has nothing to load.")
    current = FineTuneJob.objects.select_for_update().filter(persona=job.persona, promoted=True).first()
    if current is not None:
        FineTuneJob.objects.filter(pk=current.pk).update(promoted=False)
    job.previous_job, job.previous_model = current, _describe(current)
    job.promoted, job.promoted_at = True, timezone.now()
    job.log += _log_line(f"Promoted: {job.persona} now answers with this adapter (was {job.previous_model}).")
    job.save()
    event_publish(kind="finetune.promoted", source="architect", payload={
        "job": job.pk, "persona": job.persona,
        "message": f"{job.persona} now uses fine-tune #{job.pk} (rollback returns to {job.previous_model})"})
    ids = [job.pk] + ([current.pk] if current else [])
    transaction.on_commit(lambda: [finetune_broadcast(job_id=i) for i in ids])
    return job


@transaction.atomic
def finetune_rollback(*, job: FineTuneJob) -> FineTuneJob | None:
    """Undo a promotion: the persona returns to what it used before (an earlier fine-tune or the base).
    Returns the job now in force, or None for the base model."""
    job = FineTuneJob.objects.select_for_update().get(pk=job.pk)
    if not job.promoted:
        raise ValueError(f"Fine-tune #{job.pk} is not {job.persona}'s current model; nothing to roll back.")
    previous = job.previous_job
    usable = (previous is not None and previous.status == FineTuneJob.Status.SUCCEEDED
              and Path(previous.gguf_adapter_path or "/nonexistent").is_file())
    FineTuneJob.objects.filter(pk=job.pk).update(promoted=False, log=job.log + _log_line(
        f"Rolled back: {job.persona} returns to {_describe(previous if usable else None)}."))
    if usable:
        FineTuneJob.objects.filter(pk=previous.pk).update(promoted=True, promoted_at=timezone.now())
    event_publish(kind="finetune.rolled_back", source="architect", payload={
        "job": job.pk, "persona": job.persona,
        "message": f"{job.persona} rolled back from fine-tune #{job.pk} to {_describe(previous if usable else None)}"})
    ids = [job.pk] + ([previous.pk] if usable else [])
    transaction.on_commit(lambda: [finetune_broadcast(job_id=i) for i in ids])
    return previous if usable else None


def persona_model_override(persona: str) -> dict[str, Any] | None:
    """What the model manager should answer `persona` with, or None for its configured model.

    {"job": id, "base_model": the GGUF the adapter was trained on, "lora_path": the llama.cpp LoRA GGUF,
     "lora_scale": 1.0, "ollama_model": name of an Ollama model with the adapter, or ""}"""
    job = (FineTuneJob.objects.filter(persona=(persona or "").upper(), promoted=True,
                                      status=FineTuneJob.Status.SUCCEEDED)
           .exclude(gguf_adapter_path="").order_by("-promoted_at", "-id").first())
    if job is None:
        return None
    return {"job": job.pk, "base_model": job.base_model, "lora_path": job.gguf_adapter_path, "lora_scale": 1.0,
            "ollama_model": job.ollama_model}


_ollama_lock = threading.Lock()


def ollama_model_create(*, job: FineTuneJob, client: Any) -> str:
    """Register base GGUF + adapter with Ollama as one model (the client's create with an adapter blob,
    the API form of a Modelfile `FROM` + `ADAPTER`); returns and stores its name."""
    name = f"a4ps-{job.persona.lower()}-ft{job.pk}"
    with _ollama_lock:
        base_digest = client.create_blob(job.base_model)
        adapter_digest = client.create_blob(job.gguf_adapter_path)
        client.create(model=name, files={Path(job.base_model).name: base_digest},
                      adapters={Path(job.gguf_adapter_path).name: adapter_digest}, stream=False)
    FineTuneJob.objects.filter(pk=job.pk).update(ollama_model=name)
    return name
