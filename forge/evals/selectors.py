"""Reads of eval runs: the list, the scoreboard over time, per-category tables and run-to-run comparison."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from forge.evals.models import EvalResult, EvalRun


def runs_page() -> QuerySet[EvalRun]:
    return EvalRun.objects.order_by("-id")


def run_results(*, run: EvalRun) -> list[EvalResult]:
    return list(run.results.order_by("id"))


def run_result(*, run: EvalRun, item_id: str) -> EvalResult | None:
    return run.results.filter(item_id=item_id).first()


def previous_run(*, run: EvalRun) -> EvalRun | None:
    """The newest finished eval before this one of the same suite and mode (what it compares with)."""
    return (EvalRun.objects.filter(suite=run.suite, mode=run.mode, status=EvalRun.Status.DONE, pk__lt=run.pk)
            .order_by("-pk").first())


def category_table(*, run: EvalRun) -> list[dict[str, Any]]:
    """Per category (and per style, for the tools suite): items, passed, pass rate, tokens, seconds."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for result in run.results.all():
        for key in (("category", result.category), ("style", result.style)):
            if not key[1]:
                continue
            row = rows.setdefault(key, {"kind": key[0], "name": key[1], "items": 0, "passed": 0, "tokens": 0,
                                        "seconds": 0.0})
            row["items"] += 1
            row["passed"] += int(result.passed)
            row["tokens"] += result.tokens
            row["seconds"] += result.seconds
    out = sorted(rows.values(), key=lambda r: (r["kind"], r["name"]))
    for row in out:
        row["pct"] = round(100 * row["passed"] / row["items"]) if row["items"] else 0
    return out


CHART_W, CHART_H, PAD = 640, 200, 36
MODE_COLOURS = {"single": "#1c7ed6", "forge": "#e8590c", "resample": "#2b8a3e", "graph": "#845ef7",
                "closedbook": "#868e96"}


def scoreboard(*, limit: int = 60) -> dict[str, Any]:
    """Finished runs over time as one line per suite and mode (pass rate 0–100 %), for an inline SVG."""
    runs = list(EvalRun.objects.filter(status=EvalRun.Status.DONE, done__gt=0).order_by("-id")[:limit])[::-1]
    if not runs:
        return {"series": [], "runs": []}
    xs = {run.pk: PAD + i * (CHART_W - 2 * PAD) / max(1, len(runs) - 1) for i, run in enumerate(runs)}
    grouped: dict[tuple[str, str], list[EvalRun]] = defaultdict(list)
    for run in runs:
        grouped[(run.suite, run.mode)].append(run)
    series = []
    for (suite, mode), members in sorted(grouped.items()):
        points = [(round(xs[r.pk], 1), round(CHART_H - PAD - r.pass_rate * (CHART_H - 1.5 * PAD), 1), r)
                  for r in members]
        series.append({"suite": suite, "mode": mode, "colour": MODE_COLOURS.get(mode, "#495057"),
                       "path": "M" + " L".join(f"{x},{y}" for x, y, _ in points),
                       "points": [{"x": x, "y": y, "run": r} for x, y, r in points],
                       "latest": members[-1]})
    return {"series": series, "runs": runs, "width": CHART_W, "height": CHART_H, "pad": PAD,
            "y_top": PAD / 2, "y_bottom": CHART_H - PAD, "x0": PAD, "x1": CHART_W - PAD}


@dataclass(frozen=True)
class Flip:
    item_id: str
    category: str
    before: EvalResult | None
    after: EvalResult | None

    @property
    def change(self) -> str:
        was = self.before.passed if self.before else None
        now = self.after.passed if self.after else None
        if was == now:
            return "same"
        if now and not was:
            return "fixed"
        if was and not now:
            return "broken"
        return "only in one"


def compare(*, a: EvalRun, b: EvalRun) -> dict[str, Any]:
    """Item by item: which items flipped between run `a` (before) and run `b` (after)."""
    before = {r.item_id: r for r in a.results.all()}
    after = {r.item_id: r for r in b.results.all()}
    flips = []
    for item_id in sorted(set(before) | set(after)):
        x, y = before.get(item_id), after.get(item_id)
        either = y or x
        flips.append(Flip(item_id, either.category if either else "", x, y))
    counts: dict[str, int] = defaultdict(int)
    for flip in flips:
        counts[flip.change] += 1
    return {"a": a, "b": b, "flips": [f for f in flips if f.change != "same"], "counts": dict(counts),
            "same": counts["same"]}
