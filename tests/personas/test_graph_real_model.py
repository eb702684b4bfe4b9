"""The seeds' first mission on the embedded default model: the run ends inside its budget with real
contributions — at least two distinct candidate lines, a non-empty thesis and a non-empty answer."""
from __future__ import annotations

import pytest

from personas import runs
from personas.graph import GraphSettings
from personas.graph.quality import distinct_lines
from personas.llm import set_model_manager
from personas.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

ONBOARDING = ("Design the onboarding protocol for new members of the Community Resource Atlas. It must be "
              "both maximally efficient and exceptionally gentle.")


def test_the_onboarding_mission_finishes_inside_its_budget_with_real_contributions(embedded_models, personas_seeded):
    budget = GraphSettings()  # the shipped defaults: config/settings.toml sets the same budgets
    set_model_manager(embedded_models)
    try:
        run = runs.run_submit(task=ONBOARDING)
    finally:
        set_model_manager(None)
    run.refresh_from_db()
    steps = list(run.steps.order_by("seq"))
    transcript = "\n".join(f"{s.persona} {s.kind}: {s.content[:300]}" for s in steps)
    assert run.status == Run.Status.DONE, run.error + transcript

    thoughts = next(s for s in steps if s.kind == "thoughts").data["thoughts"]
    kept, _ = distinct_lines(thoughts, task=ONBOARDING, instructions="", embed=embedded_models.embed)
    assert len(kept) >= 2, transcript
    theses = [s for s in steps if s.kind == "thesis" and s.data.get("tool_spec") is None]
    assert theses and all(s.content.strip() for s in theses), transcript
    assert not theses[0].data.get("fallback"), transcript  # BRICK's own thesis, not a stand-in
    # A revision may be cut by the run's time budget (how long the first round takes depends on how busy
    # the machine is); then the previous thesis stands, and only if the run says the budget ran out.
    cut = any(s.kind == "budget" for s in steps)
    assert all(not s.data.get("fallback") or cut for s in theses[1:]), transcript
    answer = next(s for s in steps if s.kind == "answer")
    assert run.final_answer.strip() and not answer.data.get("fallback"), transcript
    assert "gave no thesis" not in run.final_answer and "TOOL_REQUIRED" not in run.final_answer
    # Inside the budget: the last contribution may start just before the time runs out.
    spent = steps[-1].data["budget"]
    assert spent["tokens"] <= budget.run_tokens + budget.max_tokens, spent
    assert spent["seconds"] <= budget.run_seconds + budget.step_seconds + 30, spent
