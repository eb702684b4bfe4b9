"""Writes of fine-tune jobs: create (freeze the dataset), train in the worker, evaluate, promote, roll back."""
from __future__ import annotations

import hashlib
import logging
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from a4ps_site.cluster import LeaseKeeper, abandoned, lease_fields
from a4ps_site.config import app_settings
from a4ps_site.realtime import broadcast, group_for
from a4ps_site.throttle import Throttle
from memory.datasets.calibration import training_allowed
from memory.datasets.services import dataset_export_lines
from memory.finetunes import engine as ft
from memory.finetunes import gate as promotion_gate
from memory.finetunes.models import ChatComparison, FineTuneJob
from memory.finetunes.selectors import base_cache_dir, base_cache_path, job_gate, loss_chart
from memory.models import GoldenDataset
from personas.events import event_publish
from personas.inference import ModelsConfig
from personas.inference.embedded_backend import ensure_packaged_gguf
from personas.inference.packaged import PACKAGED_MODELS, packaged_for_file
from personas.llm import model_manager
from personas.ports import ports
from personas.runner import lease_seconds

log = logging.getLogger(__name__)

FINETUNES_GROUP = "finetunes"  # rows of the Fine-tunes page


def finetune_settings() -> dict[str, Any]:
    raw = app_settings().get("finetune", {})
    return raw if isinstance(raw, dict) else {}


def finetune_dir(job_id: int) -> Path:
    return Path(settings.SHARED_DIR) / "finetune" / str(job_id)


def base_cache_clear() -> int:
    """Delete every dequantised base in the cache (they are rebuilt on demand); returns the bytes freed.
    Refused while a job could be reading one."""
    busy = FineTuneJob.objects.filter(status__in=[FineTuneJob.Status.QUEUED, FineTuneJob.Status.RUNNING,
                                                  FineTuneJob.Status.CANCELLING]).order_by("id").first()
    if busy is not None:
        raise ValueError(f"Fine-tune #{busy.pk} is {busy.status}: clear the cache once no job is queued or running.")
    freed = 0
    for row in ft.cached_bases(base_cache_path()):
        freed += row["bytes"]
        shutil.rmtree(row["path"], ignore_errors=True)
    for unfinished in ft.unfinished_cache_entries(base_cache_path()):
        freed += sum(f.stat().st_size for f in unfinished.rglob("*") if f.is_file())
        shutil.rmtree(unfinished, ignore_errors=True)
    return freed


def base_model_for(persona: str) -> str:
    """The weights a persona's fine-tune starts from: `[finetune] base_model_dir` when set (any model
    directory or GGUF), else the GGUF the embedded backend answers this persona with."""
    override = str(finetune_settings().get("base_model_dir", "") or "").strip()
    if override:
        return override
    chosen = ModelsConfig.from_dict(app_settings().get("models")).embedded.source_for(persona)
    # A packaged model is assembled lazily by the job (seconds of I/O) rather than in the web request.
    if chosen in PACKAGED_MODELS:
        return str(Path(settings.VAR_DIR) / "models" / PACKAGED_MODELS[chosen].file_name)
    return str(Path(chosen).expanduser())


def finetune_create(*, dataset: GoldenDataset, hyperparameters: dict[str, Any], user: Any = None) -> FineTuneJob:
    """Freeze the dataset's included examples into var/finetune/<job>/data.jsonl and queue the job.

    The job is picked up by the worker that subscribes to "finetune.queued" (MemoryConfig.ready())."""
    hyper = ft.Hyperparameters.from_dict(hyperparameters)
    gate_task_count()  # a bad [finetune] gate_tasks is refused now, not after the training
    if not dataset.examples.filter(included=True).exists():
        raise ValueError(f"{dataset.name} has no included examples to train on.")
    allowed, why = training_allowed()
    if not allowed:
        raise ValueError(why)
    with transaction.atomic():
        job = FineTuneJob.objects.create(
            persona=dataset.persona, base_model=base_model_for(dataset.persona), dataset=dataset,
            hyperparameters=hyper.to_dict(), created_by=user if getattr(user, "pk", None) else None,
        )
        folder = finetune_dir(job.pk)
        folder.mkdir(parents=True, exist_ok=True)
        snapshot = folder / "data.jsonl"
        count = 0
        digest = hashlib.sha256()
        with open(snapshot, "w", encoding="utf-8") as fh:
            for line in dataset_export_lines(dataset=dataset):
                fh.write(line)
                digest.update(line.encode("utf-8"))
                count += 1
        job.snapshot_path, job.examples, job.snapshot_sha256 = str(snapshot), count, digest.hexdigest()
        job.log = _log_line(f"Queued: {count} example(s) of {dataset.name} frozen into {snapshot} "
                            f"(SHA-256 {job.snapshot_sha256[:12]}…).")
        job.save(update_fields=["snapshot_path", "examples", "snapshot_sha256", "log"])
        event_publish(kind="finetune.queued", source="architect", payload={
            "job": job.pk, "message": f"Fine-tune #{job.pk} of {job.persona} queued ({count} examples)"})
        transaction.on_commit(lambda: finetune_broadcast(job_id=job.pk))
    return job


def _log_line(text: str) -> str:
    return f"[{timezone.now():%H:%M:%S}] {text}\n"


def finetune_render(*, job: FineTuneJob) -> dict[str, str]:
    """The job's status partial (job page) and its row (Fine-tunes page), as out-of-band swaps."""
    context = {"job": job, "chart": loss_chart(job.loss_history), "gate": job_gate(job), "oob": True}
    return {
        # The setup card follows too: its adapter paths are filled in when the job finishes.
        "status": render_to_string("memory/finetunes/_status.html", context)
        + render_to_string("memory/finetunes/_setup.html", context),
        "row": render_to_string("memory/finetunes/_row.html", context),
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
        lease = lease_fields(lease_seconds())
        job.worker, job.lease_until = lease["worker"], lease["lease_until"]
        job.log += _log_line(f"Started on {job.worker}.")
        job.save(update_fields=["status", "started", "log", "worker", "lease_until"])
        event_publish(kind="finetune.started", source="worker",
                      payload={"job": job.pk, "message": f"Fine-tune #{job.pk} of {job.persona} started"})
        transaction.on_commit(lambda: finetune_broadcast(job_id=job_id))
    return job


def _resolve_base(job: FineTuneJob) -> Path:
    path = Path(job.base_model)
    packaged = packaged_for_file(path)
    if packaged and (path.parent == Path(settings.VAR_DIR) / "models" or not path.exists()):
        # A packaged model is assembled on each host: a job created on another one names its var/.
        return ensure_packaged_gguf(Path(settings.VAR_DIR) / "models", packaged.key)
    return path


TRAIN_SHARE = 0.9  # of the progress bar; conversion and evaluation take the rest


def finetune_execute(*, job_id: int) -> FineTuneJob | None:
    """Run a queued job to its end: train, export the llama.cpp adapter, evaluate on the held-out split.
    Errors and cancellation are recorded on the job; the work folder keeps the snapshot."""
    job = _claim(job_id)
    if job is None:
        return None
    with LeaseKeeper(FineTuneJob, job.pk, lease_seconds(), worker=job.worker):
        return _train(job)


def finetunes_recover(*, requeue: Callable[[int], Any]) -> int:
    """Jobs whose worker died (its lease ran out, or its process on this node is gone) start over on
    another worker; one that was being cancelled is cancelled. Returns how many were taken up."""
    taken = 0
    active = FineTuneJob.objects.filter(status__in=[FineTuneJob.Status.RUNNING, FineTuneJob.Status.CANCELLING])
    for job in abandoned(active):
        with transaction.atomic():
            job = FineTuneJob.objects.select_for_update().get(pk=job.pk)
            if not abandoned(FineTuneJob.objects.filter(pk=job.pk, status=job.status)).exists():
                continue  # renewed, or taken by another worker meanwhile
            who = job.worker or "its worker"
            if job.status == FineTuneJob.Status.CANCELLING:
                job.status, job.finished = FineTuneJob.Status.CANCELLED, timezone.now()
                job.log += _log_line(f"{who} stopped while cancelling: cancelled.")
            else:
                job.status, job.progress, job.step = FineTuneJob.Status.QUEUED, 0.0, 0
                job.log += _log_line(f"{who} stopped mid-training: queued again from the start.")
            job.worker, job.lease_until = "", None
            job.save()
            requeued = job.status == FineTuneJob.Status.QUEUED
            event_publish(kind="finetune.recovered", source="worker", payload={
                "job": job.pk, "message": f"Fine-tune #{job.pk}: {who} stopped; "
                                          + ("queued again" if requeued else "cancelled")})
            transaction.on_commit(lambda job_id=job.pk: finetune_broadcast(job_id=job_id))
        if requeued:
            requeue(job.pk)
        taken += 1
    return taken


def _train(job: FineTuneJob) -> FineTuneJob:
    work_dir = finetune_dir(job.pk)
    throttle = Throttle()  # training reports every step; the page needs a few updates a second
    history: list[list[float]] = []

    def on_step(info: ft.StepInfo) -> None:
        history.append([info.step, round(info.loss, 5)])
        if not throttle.ready(force=info.step == info.total_steps):
            return
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
                               cache_dir=base_cache_dir(), on_step=on_step, should_stop=should_stop, log=log_line)
        _update(job.pk, adapter_path=str(outcome.adapter_dir),
                gguf_adapter_path=str(outcome.gguf_adapter or ""), progress=0.95,
                tokens_per_s=round(outcome.train.tokens_per_s, 1))
        log_line(f"ALFRED compares {len(outcome.comparisons)} held-out pair(s), blind, in both orders…")
        evaluation = evaluation_judge(comparisons=outcome.comparisons, persona=job.persona, seed=job.pk)
        tally = evaluation["tally"]
        log_line(f"Held-out verdicts: adapter won {tally['adapted']}, lost {tally['base']}, tied {tally['tie']}"
                 + (f", {tally['unjudged']} unjudged." if tally["unjudged"] else "."))
        if outcome.gguf_adapter is not None:
            try:
                evaluation["tasks"] = _task_check(job, Path(outcome.gguf_adapter), log_line)
            except Exception as exc:  # noqa: BLE001 - the adapter and its verdicts are kept either way
                log.exception("fine-tune %s: the task check failed", job.pk)
                log_line(f"Task accuracy not measured: {type(exc).__name__}: {exc}")
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
        job.lease_until = None
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
            "job": job.pk,
            "message": f"Fine-tune #{job.pk} of {job.persona} {status}" + (f": {error}" if error else "")})
        transaction.on_commit(lambda: finetune_broadcast(job_id=job.pk))
    return job


def gate_task_count() -> int:
    """`[finetune] gate_tasks`: how many tasks of the evals suite the base and the adapter each answer
    before Promote (0 = none)."""
    value = finetune_settings().get("gate_tasks", 8)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 200:
        raise ValueError(f"finetune.gate_tasks must be a whole number from 0 to 200, got {value!r}")
    return value


def _task_check(job: FineTuneJob, adapter: Path, log_line: Callable[[str], None]) -> dict[str, Any] | None:
    """The persona on a fixed subset of the `tasks` suite with its bare base and with the adapter."""
    limit = gate_task_count()
    if limit == 0:
        log_line("Task accuracy not measured (finetune.gate_tasks = 0).")
        return None
    weights = {"base": {"base_model": job.base_model, "lora_path": "", "ollama_model": ""},
               "adapted": {"base_model": job.base_model, "lora_path": str(adapter), "lora_scale": 1.0,
                           "ollama_model": job.ollama_model}}
    out: dict[str, Any] = {}
    for name, adapter_spec in weights.items():
        log_line(f"Tasks with the {'adapter' if name == 'adapted' else 'bare base'}: {limit} from the evals suite…")
        result = ports().task_accuracy(persona=job.persona, adapter=adapter_spec, limit=limit)
        if result is None:
            log_line("Task accuracy not measured: no evals runner is installed.")
            return None
        out[name] = result
        log_line(f"… {result['passed']} of {result['n']} right.")
    return out


EVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"better": {"type": "string", "enum": ["A", "B", "tie"]}, "reason": {"type": "string"}},
    "required": ["better", "reason"],
}


def _ask_judge(*, persona: str, row: dict[str, str], shown: tuple[str, str], model: Any) -> dict[str, Any]:
    """One blind verdict: the two answers as A and B in the order `shown` ("base"/"adapted" each)."""
    a, b = (row[shown[0]], row[shown[1]])
    messages = [
        {"role": "system", "content": "You are ALFRED, the supervisor and critic of the team."},
        {"role": "user", "content": (
            f"A prompt {persona} received:\n{row['prompt'][:3000]}\n\nA reference answer judged exemplary:\n"
            f"{row['reference'][:2000]}\n\nAnswer A:\n{a or '(empty)'}\n\nAnswer B:\n{b or '(empty)'}\n\n"
            "Which answer is better for the person asking, closer in quality to the reference? "
            "Reply as JSON: better = A, B or tie, and a one-sentence reason.")},
    ]
    try:
        result = (model or model_manager()).chat("ALFRED", messages, json_schema=EVAL_SCHEMA, max_tokens=160,
                                                temperature=0)
        parsed = result.parsed if isinstance(result.parsed, dict) else {}
        label = parsed.get("better")
        if label not in ("A", "B", "tie"):
            raise ValueError(f"ALFRED's verdict could not be read: {result.content[:200]!r}")
    except Exception as exc:  # noqa: BLE001 - a judge that cannot answer leaves the pair unjudged, never
        # the trained adapter and its generated answers lost (the model, its lock or the broker may be away)
        log.warning("held-out verdict failed: %s", exc)
        return {"shown": list(shown), "said": "", "better": "unjudged", "reason": f"{type(exc).__name__}: {exc}"}
    winner = "tie" if label == "tie" else shown[0 if label == "A" else 1]
    return {"shown": list(shown), "said": label, "better": winner, "reason": str(parsed.get("reason", "")).strip(),
            "model": getattr(result, "model", "")}


def evaluation_judge(*, comparisons: list[dict[str, str]], persona: str, model: Any = None,
                     seed: int = 0) -> dict[str, Any]:
    """ALFRED compares base and adapted answers per held-out prompt, blind: the answers are labelled A and
    B only, each pair is judged in both orders (which order comes first is drawn at random), and the two
    verdicts combine into one outcome. Returns the rows with both verdicts, a tally and the gate."""
    rng = random.Random(seed)
    tally = {"adapted": 0, "base": 0, "tie": 0, "unjudged": 0}
    rows = []
    for row in comparisons:
        first: tuple[str, str] = ("adapted", "base") if rng.random() < 0.5 else ("base", "adapted")
        judgements = [_ask_judge(persona=persona, row=row, shown=order, model=model)
                      for order in (first, (first[1], first[0]))]
        outcome = promotion_gate.combine(judgements[0]["better"], judgements[1]["better"])
        tally[outcome] += 1
        reason = " / ".join(j["reason"] for j in judgements if j["reason"])
        rows.append({**row, "judgements": judgements, "verdict": {"better": outcome, "reason": reason}})
    said = [j["said"] for row in rows for j in row["judgements"] if j["said"] in ("A", "B")]
    return {"examples": rows, "tally": tally, "gate": promotion_gate.gate(tally), "blind": True,
            "position": {"verdicts": len(said), "first": said.count("A")}}


# --- promote and rollback --------------------------------------------------------------------------

def _describe(job: FineTuneJob | None) -> str:
    return f"fine-tune #{job.pk}" if job else "the base model"


OVERRIDE_MIN_CHARS = 10


@transaction.atomic
def finetune_promote(*, job: FineTuneJob, user: Any = None, reason: str = "") -> FineTuneJob:
    """Make the persona answer with this job's adapter; the model it used until now is kept for rollback.

    Only an adapter the held-out comparisons show better than its base is promoted as is; any other
    needs a person's typed reason, recorded with their name."""
    job = FineTuneJob.objects.select_for_update().get(pk=job.pk)
    if job.status != FineTuneJob.Status.SUCCEEDED:
        raise ValueError(f"Fine-tune #{job.pk} is {job.status}; only a succeeded job can be promoted.")
    if job.promoted:
        raise ValueError(f"Fine-tune #{job.pk} is already {job.persona}'s model.")
    if not job.gguf_adapter_path or not Path(job.gguf_adapter_path).is_file():
        raise ValueError(f"Fine-tune #{job.pk} has no llama.cpp adapter (its base was not a GGUF), so the "
                         "model manager has nothing to load.")
    verdict = job_gate(job)
    reason = (reason or "").strip()
    if not verdict["passed"] and len(reason) < OVERRIDE_MIN_CHARS:
        raise ValueError(f"{verdict['why']} To promote it anyway, say why (at least {OVERRIDE_MIN_CHARS} "
                         "characters); the reason is recorded with your name.")
    current = FineTuneJob.objects.select_for_update().filter(persona=job.persona, promoted=True).first()
    if current is not None:
        FineTuneJob.objects.filter(pk=current.pk).update(promoted=False)
    job.previous_job, job.previous_model = current, _describe(current)
    job.promoted, job.promoted_at = True, timezone.now()
    job.promoted_by = user if getattr(user, "pk", None) else None
    job.promotion_reason = reason if not verdict["passed"] else ""
    who = f" by {job.promoted_by.get_username()}" if job.promoted_by else ""
    how = "the evaluation shows it better" if verdict["passed"] else f"overriding the gate: {reason}"
    job.log += _log_line(f"Promoted{who} ({how}): {job.persona} now answers with this adapter "
                         f"(was {job.previous_model}).")
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


# --- compare in chat -------------------------------------------------------------------------------

COMPARE_MAX_PROMPT = 4000
COMPARE_MAX_TOKENS = 384


def compare_group(job_id: int) -> str:
    return group_for("finetune-compare", job_id)


def comparison_render(*, comparison: ChatComparison) -> str:
    return render_to_string("memory/finetunes/_comparison.html", {"c": comparison, "oob": True})


def comparison_broadcast(*, comparison_id: int) -> None:
    comparison = ChatComparison.objects.select_related("job", "voter").filter(pk=comparison_id).first()
    if comparison is not None:
        broadcast(compare_group(comparison.job_id), "ui.html", html=comparison_render(comparison=comparison))


def comparison_create(*, job: FineTuneJob, prompt: str, user: Any = None) -> ChatComparison:
    """Queue one prompt for the persona with the job's base and with its adapter (the worker asks both,
    one after the other: one model in memory at a time)."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValueError("Write a prompt to send to both models.")
    if len(prompt) > COMPARE_MAX_PROMPT:
        raise ValueError(f"The prompt is {len(prompt):,} characters; at most {COMPARE_MAX_PROMPT:,} are sent.")
    if job.status != FineTuneJob.Status.SUCCEEDED:
        raise ValueError(f"Fine-tune #{job.pk} is {job.status}: only a finished job has an adapter to compare.")
    if not job.gguf_adapter_path or not Path(job.gguf_adapter_path).is_file():
        raise ValueError(f"Fine-tune #{job.pk} has no llama.cpp adapter (its base was not a GGUF), so the "
                         "adapted model cannot answer here.")
    with transaction.atomic():
        comparison = ChatComparison.objects.create(
            job=job, prompt=prompt, adapted_is_a=random.random() < 0.5,
            created_by=user if getattr(user, "pk", None) else None)
        event_publish(kind="finetune.compare_queued", source="architect", payload={
            "job": job.pk, "comparison": comparison.pk,
            "message": f"Comparing fine-tune #{job.pk} with its base on a prompt"})
    return comparison


def _comparison_update(comparison_id: int, **fields: Any) -> None:
    ChatComparison.objects.filter(pk=comparison_id).update(**fields)
    comparison_broadcast(comparison_id=comparison_id)


def comparison_execute(*, comparison_id: int, model: Any = None) -> ChatComparison | None:
    """Ask the persona with the bare base, then with the adapter; record both answers under their blind
    labels. A failure is recorded on the comparison and shown on its card."""
    with transaction.atomic():
        comparison = (ChatComparison.objects.select_for_update().select_related("job")
                      .filter(pk=comparison_id).first())
        if comparison is None or comparison.status != ChatComparison.Status.QUEUED:
            return None  # another worker has it
        comparison.status = ChatComparison.Status.RUNNING
        comparison.save(update_fields=["status"])
    comparison_broadcast(comparison_id=comparison.pk)
    job = comparison.job
    base = {"base_model": job.base_model, "lora_path": "", "ollama_model": ""}
    adapted = {"base_model": job.base_model, "lora_path": job.gguf_adapter_path, "lora_scale": 1.0,
               "ollama_model": job.ollama_model}
    messages = [{"role": "user", "content": comparison.prompt}]
    # Asked in label order, A then B, so the order in which the answers arrive on the page tells nothing.
    labelled = (("answer_a", adapted), ("answer_b", base)) if comparison.adapted_is_a \
        else (("answer_a", base), ("answer_b", adapted))
    try:
        for field_name, adapter in labelled:
            result = (model or model_manager()).chat(job.persona, messages, adapter=adapter,
                                                    max_tokens=COMPARE_MAX_TOKENS, temperature=0)
            _comparison_update(comparison.pk, **{field_name: (result.content or "").strip()})
    except Exception as exc:  # noqa: BLE001 - shown on the card; a comparison never stays "answering…"
        _comparison_update(comparison.pk, status=ChatComparison.Status.FAILED, finished=timezone.now(),
                           error=f"{type(exc).__name__}: {exc}"[:2000])
    else:
        _comparison_update(comparison.pk, status=ChatComparison.Status.DONE, finished=timezone.now())
    return ChatComparison.objects.get(pk=comparison.pk)


def comparison_vote(*, comparison: ChatComparison, vote: str, user: Any = None) -> ChatComparison:
    """Record which blind answer a person found better (A, B or tie); changing one's mind is allowed.
    The vote joins the job's promotion gate."""
    if vote not in (ChatComparison.Vote.A, ChatComparison.Vote.B, ChatComparison.Vote.TIE):
        raise ValueError(f"A vote is A, B or tie, not {vote!r}.")
    if comparison.status != ChatComparison.Status.DONE:
        raise ValueError("Both answers must be in before you vote.")
    comparison.vote, comparison.voter = vote, user if getattr(user, "pk", None) else None
    comparison.save(update_fields=["vote", "voter"])
    transaction.on_commit(lambda: comparison_broadcast(comparison_id=comparison.pk))
    transaction.on_commit(lambda: finetune_broadcast(job_id=comparison.job_id))
    return comparison
