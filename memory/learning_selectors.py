"""Reads of the strategic loop: datasets, filtered examples, fine-tune jobs, and the loss chart."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db.models import Count, Max, Q, QuerySet

from memory.models import CuratorVerdict, FineTuneJob, GoldenDataset, GoldenExample


def datasets_overview() -> list[GoldenDataset]:
    """Every dataset with its size (all and included) and its newest fine-tune."""
    return list(
        GoldenDataset.objects.annotate(
            size=Count("examples", distinct=True),
            included_size=Count("examples", filter=Q(examples__included=True), distinct=True),
            last_job=Max("jobs__id"),
        ).order_by("persona", "name")
    )


@dataclass(frozen=True)
class ExampleFilters:
    """The examples table's search and filters, already validated."""

    q: str = ""
    persona: str = ""
    score_min: float | None = None
    score_max: float | None = None
    date_from: date | None = None
    date_to: date | None = None
    included: str = ""  # "", "yes", "no"

    def as_query(self) -> dict[str, Any]:
        return {k: ("" if v is None else v) for k, v in self.__dict__.items()}


def examples_page(*, dataset: GoldenDataset | None = None, filters: ExampleFilters | None = None) -> QuerySet:
    f = filters or ExampleFilters()
    qs = GoldenExample.objects.select_related("dataset", "run")
    if dataset is not None:
        qs = qs.filter(dataset=dataset)
    if f.persona:
        qs = qs.filter(dataset__persona=f.persona)
    for word in f.q.split():
        qs = qs.filter(Q(text__icontains=word) | Q(rationale__icontains=word))
    if f.score_min is not None:
        qs = qs.filter(score__gte=f.score_min)
    if f.score_max is not None:
        qs = qs.filter(score__lte=f.score_max)
    if f.date_from is not None:
        qs = qs.filter(created__date__gte=f.date_from)
    if f.date_to is not None:
        qs = qs.filter(created__date__lte=f.date_to)
    if f.included == "yes":
        qs = qs.filter(included=True)
    elif f.included == "no":
        qs = qs.filter(included=False)
    return qs.order_by("-id")


def verdicts_recent(*, limit: int = 10) -> list[CuratorVerdict]:
    return list(CuratorVerdict.objects.select_related("run")[:limit])


def curator_counts() -> dict[str, int]:
    return {
        "judged": CuratorVerdict.objects.count(),
        "accepted": CuratorVerdict.objects.filter(accepted=True).count(),
    }


def jobs_page() -> QuerySet:
    return FineTuneJob.objects.select_related("dataset").order_by("-id")


def promoted_jobs() -> dict[str, FineTuneJob]:
    """Persona → the fine-tune it answers with now."""
    return {j.persona: j for j in FineTuneJob.objects.filter(promoted=True)}


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
