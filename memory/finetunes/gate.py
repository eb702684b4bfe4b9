"""The promotion gate: is an adapter measurably better than its base, and no worse at tasks?

Each held-out prompt is judged twice, with the base and the adapted answer shown in both orders; the
two verdicts make one outcome for the adapter (win, tie or loss). The adapter's score is
(wins + ties / 2) / judged, with a 95 % Wilson interval; the gate opens only when the whole interval
lies above 0.5, i.e. when the comparisons exclude "no better than the base", and when the adapter
answers no fewer of a fixed subset of the evals `tasks` suite than the base does (where measured)."""
from __future__ import annotations

import math
from typing import Any

Z95 = 1.959964
MIN_COMPARISONS = 20  # what the evaluation asks for; fewer still count, with a wider interval


def combine(first: str, second: str) -> str:
    """One outcome for the adapter from its two verdicts ("adapted", "base", "tie" or "unjudged", one
    per order): agreeing verdicts stand, a tie and a preference lean to the preference, opposite
    preferences (the judge followed the position, not the answer) are a tie. A pair with a verdict
    missing is unjudged: one order alone cannot tell a preference from a position bias."""
    if "unjudged" in (first, second):
        return "unjudged"
    verdicts = [first, second]
    if "adapted" in verdicts and "base" in verdicts:
        return "tie"
    if "adapted" in verdicts:
        return "adapted"
    if "base" in verdicts:
        return "base"
    return "tie"


def wilson(score: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion observed as `score` over n trials."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (score + z * z / (2 * n)) / denom
    half = z * math.sqrt(score * (1 - score) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def tasks_verdict(tasks: dict[str, Any] | None) -> dict[str, Any]:
    """Whether task accuracy held with the adapter: {"measured", "held", "base", "adapted", "n", "why"}."""
    base, adapted = (tasks or {}).get("base"), (tasks or {}).get("adapted")
    if not base or not adapted or not base.get("n"):
        return {"measured": False, "held": True, "why": "Task accuracy was not measured."}
    n, b, a = int(base["n"]), int(base["passed"]), int(adapted["passed"])
    held = a >= b
    return {"measured": True, "held": held, "base": b, "adapted": a, "n": n,
            "why": (f"On {n} tasks of the evals suite the adapter answers {a} right, the base {b}"
                    + (": no drop." if held else ": task accuracy drops, so Promote stays shut."))}


def gate(tally: dict[str, int], tasks: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the evaluation shows and whether Promote is open: wins, ties, losses, the adapter's score
    with its 95 % interval, task accuracy with and without the adapter, and a sentence saying why."""
    result = _comparisons(tally)
    result["tasks"] = tasks_verdict(tasks)
    if not result["tasks"]["held"]:
        result["passed"] = False
    return result


def _comparisons(tally: dict[str, int]) -> dict[str, Any]:
    wins, ties, losses = (int(tally.get(k, 0)) for k in ("adapted", "tie", "base"))
    n = wins + ties + losses
    if n == 0:
        return {"wins": 0, "ties": 0, "losses": 0, "n": 0, "score": None, "low": None, "high": None,
                "passed": False, "few": True,
                "why": "No held-out comparison was judged: nothing shows the adapter is better."}
    score = (wins + ties / 2) / n
    low, high = wilson(score, n)
    passed = low > 0.5
    if passed:
        why = (f"The adapter won {wins} and lost {losses} of {n} held-out comparisons (tie {ties}); its score "
               f"{score:.2f} has a 95 % interval of {low:.2f}–{high:.2f}, above the 0.5 of no difference.")
    elif high < 0.5:
        why = (f"The adapter is worse than its base: score {score:.2f} (95 % interval {low:.2f}–{high:.2f}) over "
               f"{n} held-out comparisons, {wins} won, {losses} lost, {ties} tied.")
    else:
        why = (f"Not shown better: score {score:.2f} over {n} held-out comparisons ({wins} won, {losses} lost, "
               f"{ties} tied); its 95 % interval {low:.2f}–{high:.2f} includes 0.5, no difference.")
    return {"wins": wins, "ties": ties, "losses": losses, "n": n, "score": round(score, 3),
            "low": round(low, 3), "high": round(high, 3), "passed": passed, "few": n < MIN_COMPARISONS,
            "why": why}
