"""Reads of golden datasets: the overview, filtered examples, the curator's verdicts."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db.models import Count, Max, Q, QuerySet

from memory.models import CuratorVerdict, GoldenDataset, GoldenExample


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
