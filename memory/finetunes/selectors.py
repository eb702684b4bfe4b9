"""Reads of fine-tune jobs, and the loss chart drawn server-side."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from a4ps_site.config import app_settings
from memory.finetunes import gate
from memory.finetunes.engine import cached_bases
from memory.finetunes.models import ChatComparison, FineTuneJob


def jobs_page() -> QuerySet[FineTuneJob]:
    return FineTuneJob.objects.select_related("dataset").order_by("-id")


def person_votes(job_ids: list[int]) -> dict[int, dict[str, int]]:
    """What people said in compare-in-chat, per job, as outcomes for the adapter: one vote per person and
    prompt (asking the same prompt again and voting again does not add evidence), the newest standing."""
    out: dict[int, dict[str, int]] = {pk: {"adapted": 0, "base": 0, "tie": 0} for pk in job_ids}
    seen: set[tuple[int, int | None, str]] = set()
    for comparison in (ChatComparison.objects.filter(job_id__in=job_ids).exclude(vote="")
                       .only("job_id", "voter_id", "prompt", "vote", "adapted_is_a").order_by("-id")):
        key = (comparison.job_id, comparison.voter_id, " ".join(comparison.prompt.lower().split()))
        if key in seen:
            continue
        seen.add(key)
        out[comparison.job_id][comparison.winner] += 1
    return out


def job_gate(job: FineTuneJob, votes: dict[str, int] | None = None) -> dict[str, Any]:
    """The promotion gate: ALFRED's held-out verdicts (jobs evaluated before the gate existed included)
    and the votes people cast in compare-in-chat, each one outcome. `votes` when already read (a list)."""
    judged = (job.evaluation or {}).get("tally") or {}
    votes = votes if votes is not None else person_votes([job.pk])[job.pk]
    verdict = gate.gate({k: int(judged.get(k, 0)) + votes[k] for k in ("adapted", "base", "tie")},
                        (job.evaluation or {}).get("tasks"))
    verdict["votes"] = votes
    verdict["people"] = sum(votes.values())
    return verdict


def finetune_record(job: FineTuneJob) -> dict[str, Any]:
    """What a promoted adapter is, for the record: its data, settings, training, evidence and who chose it."""
    verdict = job_gate(job)
    return {
        "job": job.pk, "persona": job.persona, "base_model": job.base_model,
        "snapshot_sha256": job.snapshot_sha256, "examples": job.examples, "hyperparameters": job.hyperparameters,
        "steps": job.step, "final_loss": job.last_loss, "loss_history": job.loss_history,
        "evaluation": {**{k: verdict[k] for k in ("wins", "ties", "losses", "n", "score", "low", "high", "passed")},
                       "tasks": verdict["tasks"]},
        "promoted_at": job.promoted_at.isoformat() if job.promoted_at else None,
        "promoted_by": job.promoted_by.get_username() if job.promoted_by else None,
        "promotion_reason": job.promotion_reason,
    }


def promoted_jobs() -> dict[str, FineTuneJob]:
    """Persona → the fine-tune it answers with now."""
    return {j.persona: j for j in FineTuneJob.objects.filter(promoted=True)}


def base_cache_path() -> Path:
    return Path(settings.VAR_DIR) / "finetune" / "base-cache"


def base_cache_dir() -> Path | None:
    """Where dequantised GGUF bases are kept between jobs, or None when `[finetune] base_cache = false`."""
    raw = app_settings().get("finetune", {})
    enabled = raw.get("base_cache", True) if isinstance(raw, dict) else True
    if not isinstance(enabled, bool):
        raise ValueError(f"finetune.base_cache must be true or false, got {enabled!r}")
    return base_cache_path() if enabled else None


def base_cache() -> dict[str, Any]:
    """What the Fine-tunes page says of the dequantised-base cache."""
    rows = cached_bases(base_cache_path())
    try:
        enabled = base_cache_dir() is not None
    except ValueError:
        enabled = False
    return {"enabled": enabled, "entries": rows, "bytes": sum(r["bytes"] for r in rows)}


# --- the loss chart -------------------------------------------------------------------------------

CHART_W, CHART_H, PAD = 560, 180, 34
_MAX_POINTS = 400


def loss_chart(history: list[list[float]] | None) -> dict[str, Any] | None:
    """Coordinates for an inline SVG of loss per step (drawn server-side: no chart library)."""
    points = [(float(s), float(v)) for s, v in (history or [])]
    if not points:
        return None
    if len(points) > _MAX_POINTS:  # keep the path short; every n-th point plus the last
        stride = len(points) / _MAX_POINTS
        points = [points[int(i * stride)] for i in range(_MAX_POINTS)] + [points[-1]]
    steps = [p[0] for p in points]
    losses = [p[1] for p in points]
    s0, s1 = min(steps), max(steps)
    lo, hi = min(losses), max(losses)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    span_s = (s1 - s0) or 1.0

    def xy(step: float, loss: float) -> tuple[float, float]:
        x = PAD + (step - s0) / span_s * (CHART_W - 2 * PAD)
        y = PAD / 2 + (hi - loss) / (hi - lo) * (CHART_H - 1.5 * PAD)
        return round(x, 1), round(y, 1)

    coords = [xy(s, v) for s, v in points]
    return {
        "width": CHART_W, "height": CHART_H, "pad": PAD,
        "path": "M" + " L".join(f"{x},{y}" for x, y in coords),
        "last": coords[-1],
        "x0": PAD, "x1": CHART_W - PAD, "y_top": PAD / 2, "y_bottom": CHART_H - PAD,
        "first_step": int(s0), "last_step": int(s1), "lo": lo, "hi": hi,
        "last_loss": losses[-1], "points": len(history or []),
    }


def finetunes_awaiting_decision() -> list[dict[str, Any]]:
    """Fine-tunes that finished in the last week and were never promoted: a person decides."""
    since = timezone.now() - timedelta(days=7)
    jobs = list(FineTuneJob.objects.filter(status=FineTuneJob.Status.SUCCEEDED, promoted_at__isnull=True,
                                           finished__gte=since).order_by("-id").values_list("pk", flat=True)[:20])
    if not jobs:
        return []
    url = reverse("finetune_detail", args=[jobs[0]]) if len(jobs) == 1 else reverse("finetunes")
    return [{"label": f"finished fine-tune{'s' if len(jobs) != 1 else ''} to promote or leave", "count": len(jobs),
             "url": url}]
