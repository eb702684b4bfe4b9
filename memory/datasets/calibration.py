"""Judge calibration: how far ALFRED's curator verdicts agree with a person's labels of the same runs.

A thumb says whether a run is good enough to learn from; compared with the verdict's "accepted" it
gives Cohen's κ. Scores (1–10 per rubric criterion) compared with ALFRED's give Spearman's ρ per
criterion. Both are shown with their counts; with too few labels they are not shown at all."""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from a4ps_site.config import app_settings
from memory.curator import CRITERIA
from memory.models import CuratorVerdict, VerdictLabel


def criterion_label(name: str) -> str:
    return name.replace("_", " ")


def describe_scores(scores: dict[str, Any] | None) -> str:
    """"reasoning 7, persona fidelity 6" in the rubric's order."""
    return ", ".join(f"{criterion_label(c)} {scores[c]}" for c in CRITERIA if (scores or {}).get(c) is not None)


MIN_FOR_STATISTIC = 3  # fewer pairs than this and κ or ρ is not computed
WEEKS_SHOWN = 8


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> float | None:
    """Cohen's κ of two raters' yes/no on the same items; None when it is undefined (too few items, or
    both raters said the same thing throughout)."""
    n = len(pairs)
    if n < MIN_FOR_STATISTIC:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    a_yes = sum(1 for a, _ in pairs if a) / n
    b_yes = sum(1 for _, b in pairs if b) / n
    expected = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's ρ (Pearson's r of the ranks, ties averaged); None with too few pairs or no spread."""
    if len(xs) != len(ys) or len(xs) < MIN_FOR_STATISTIC:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def calibration_settings() -> dict[str, Any]:
    """`[curator] min_agreement` (κ a person's thumbs must reach with ALFRED before training or export;
    0 = no gate) and `min_labels` (how many thumbs that takes at least)."""
    raw = app_settings().get("curator", {})
    raw = raw if isinstance(raw, dict) else {}
    min_agreement, min_labels = raw.get("min_agreement", 0.0), raw.get("min_labels", 20)
    if isinstance(min_agreement, bool) or not isinstance(min_agreement, (int, float)) or not -1 <= min_agreement <= 1:
        raise ValueError(f"curator.min_agreement must be a number from -1 to 1 (0 = off), got {min_agreement!r}")
    if isinstance(min_labels, bool) or not isinstance(min_labels, int) or min_labels < 1:
        raise ValueError(f"curator.min_labels must be a whole number of at least 1, got {min_labels!r}")
    return {"min_agreement": float(min_agreement), "min_labels": min_labels}


def _pairs(labels: Sequence[VerdictLabel]) -> dict[str, Any]:
    thumbs = [(lab.verdict.accepted, lab.thumb == 1) for lab in labels if lab.thumb in (1, -1)]
    per_criterion: dict[str, tuple[list[float], list[float]]] = {c: ([], []) for c in CRITERIA}
    for lab in labels:
        for criterion in CRITERIA:
            theirs, ours = (lab.verdict.scores or {}).get(criterion), (lab.scores or {}).get(criterion)
            if isinstance(theirs, (int, float)) and isinstance(ours, (int, float)):
                per_criterion[criterion][0].append(float(theirs))
                per_criterion[criterion][1].append(float(ours))
    return {"thumbs": thumbs, "criteria": per_criterion}


def agreement() -> dict[str, Any]:
    """Agreement between ALFRED and people over every label, per criterion, and week by week."""
    labels = list(VerdictLabel.objects.select_related("verdict").order_by("created"))
    pairs = _pairs(labels)
    thumbs = pairs["thumbs"]
    criteria = [{"name": c, "label": criterion_label(c), "rho": spearman(*pairs["criteria"][c]),
                 "n": len(pairs["criteria"][c][0])} for c in CRITERIA]
    by_week: dict[Any, list[VerdictLabel]] = defaultdict(list)
    since = timezone.now() - timedelta(weeks=WEEKS_SHOWN)
    for lab in labels:
        if lab.created >= since:
            by_week[(lab.created - timedelta(days=lab.created.weekday())).date()].append(lab)
    weeks = []
    for start in sorted(by_week):
        week_thumbs = _pairs(by_week[start])["thumbs"]
        weeks.append({"start": start, "kappa": cohen_kappa(week_thumbs), "n": len(week_thumbs),
                      "agree": sum(1 for a, b in week_thumbs if a == b)})
    return {"kappa": cohen_kappa(thumbs), "n": len(thumbs), "agree": sum(1 for a, b in thumbs if a == b),
            "criteria": criteria, "weeks": weeks, "labels": len(labels)}


def training_allowed(stats: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Whether the calibration gate lets a dataset be trained on or exported now, and why (`stats`: the
    agreement when already computed)."""
    config = calibration_settings()
    if config["min_agreement"] == 0:
        return True, "The calibration gate is off (curator.min_agreement = 0)."
    stats = stats or agreement()
    if stats["n"] < config["min_labels"]:
        return False, (f"The calibration gate needs {config['min_labels']} thumbs on ALFRED's verdicts before "
                       f"training or export; {stats['n']} given so far (Datasets → Review verdicts).")
    if stats["kappa"] is None or stats["kappa"] < config["min_agreement"]:
        shown = "undefined" if stats["kappa"] is None else f"{stats['kappa']:.2f}"
        return False, (f"ALFRED agrees too little with people to pick training data: κ = {shown} over "
                       f"{stats['n']} thumbs, the gate asks for {config['min_agreement']:.2f}.")
    return True, f"κ = {stats['kappa']:.2f} over {stats['n']} thumbs meets the gate ({config['min_agreement']:.2f})."


# --- the review queue ------------------------------------------------------------------------------

def review_queue(user: AbstractBaseUser | AnonymousUser) -> Any:
    """Verdicts this person has not labelled yet, newest first (unreadable verdicts have nothing to check)."""
    return (CuratorVerdict.objects.filter(error="", total__isnull=False).exclude(labels__user_id=user.pk)
            .select_related("run").order_by("-id"))


def review_next(user: AbstractBaseUser | AnonymousUser, *, before: int | None = None) -> CuratorVerdict | None:
    """The next verdict to label (older than `before` when the person skipped one)."""
    queue = review_queue(user)
    if before is not None:
        queue = queue.filter(pk__lt=before)
    return queue.first()


def label_save(*, verdict: CuratorVerdict, user: Any, thumb: str, scores: dict[str, str]) -> VerdictLabel:
    """Record (or replace) a person's label of a verdict; a thumb, scores, or both."""
    value = {"up": 1, "down": -1, "": None}.get((thumb or "").strip())
    if (thumb or "").strip() not in ("up", "down", ""):
        raise ValueError(f"A thumb is up or down, not {thumb!r}.")
    clean: dict[str, int] = {}
    for criterion in CRITERIA:
        raw = (scores.get(criterion) or "").strip()
        if not raw:
            continue
        if not raw.isdigit() or not 1 <= int(raw) <= 10:
            raise ValueError(f"{criterion.replace('_', ' ')} must be a whole number from 1 to 10, got {raw!r}.")
        clean[criterion] = int(raw)
    if value is None and not clean:
        raise ValueError("Give a thumb (Y or N) or at least one score from 1 to 10.")
    with transaction.atomic():
        label, _ = VerdictLabel.objects.update_or_create(verdict=verdict, user=user,
                                                         defaults={"thumb": value, "scores": clean})
    return label
