"""What a person sees of a run's quality: the budget bar, fallbacks, the path through the graph,
"don't remember this run", the curator forgetting poor answers, `manage.py ask` and graph-mode evals."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from forge.evals import services as eval_services
from memory.curator import curate
from memory.services import memory_store
from personas import runs
from personas.models import Run
from tests.memory.test_curator import Judge

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_run_page_shows_the_budget_the_path_and_a_fallback_answer(auth_client, scripted_model, personas_seeded):
    scripted_model.rules["answer"] = ""  # ALFRED stays hollow: BRICK's thesis stands in, marked as such
    run = runs.run_submit(task="What is 2 + 2?")
    run.refresh_from_db()
    assert run.status == Run.Status.DONE and run.final_answer == "Two plus two is four, by counting."
    page = auth_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'id="run-budget"' in page and "/ 3000" in page  # tokens used of the default budget
    assert "A fallback, not the team's own answer" in page and 'class="badge fallback"' in page
    assert 'class="visited-mark" data-node="alfred_route"' in page
    assert 'class="visited-mark" data-node="alfred_synthesis"' in page
    assert 'rect data-node="brick_thesis"' in page  # the diagram node the path lights up
    assert "Not stored in memory" in page and "Don't remember this run" not in page
    assert memory_store().count(level=1) == 0


def test_a_person_can_say_dont_remember_this_run(auth_client, scripted_model, personas_seeded):
    run = runs.run_submit(task="Explain photosynthesis briefly")
    assert memory_store().count(level=1) == 1
    url = reverse("run_forget", args=[run.pk])
    page = auth_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert f'action="{url}"' in page
    assert Client().post(url).status_code == 302 and memory_store().count(level=1) == 1  # login required
    assert auth_client.get(url).status_code == 405
    done = auth_client.post(url, follow=True).content.decode()
    assert f"Run #{run.pk} removed from memory" in done
    assert memory_store().count(level=1) == 0
    assert run.steps.get(kind="memory").content.startswith("Removed from memory: ada asked")
    again = auth_client.post(url, follow=True).content.decode()
    assert "had nothing in memory" in again


def test_the_curator_removes_poorly_scored_runs_from_memory(scripted_model, personas_seeded):
    poor = runs.run_submit(task="Say hello in five words.")
    good = runs.run_submit(task="A good question about rivers")
    assert memory_store().count(level=1) == 2
    counts = curate(limit=5, model=Judge())
    assert counts["forgotten"] == 1
    remaining = {memory_store().get_memory(m).run_id for m in [s.data["memory"] for s in
                 [good.steps.get(kind="memory")]]}
    assert remaining == {good.pk} and memory_store().count(level=1) == 1
    assert poor.steps.get(kind="memory").content.startswith("Removed from memory: the curator scored it")


def test_ask_submits_a_task_and_prints_the_final_answer(scripted_model, personas_seeded):
    out, err = StringIO(), StringIO()
    call_command("ask", "What is 2 + 2?", "--wait", stdout=out, stderr=err)
    assert out.getvalue().strip().endswith("The answer is 4.")
    run = Run.objects.get()
    assert run.task == "What is 2 + 2?" and run.status == Run.Status.DONE
    out = StringIO()
    call_command("ask", "And 3 + 3?", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["final_answer"] == "The answer is 4." and [s["kind"] for s in data["steps"]][-1] == "memory"
    with pytest.raises(CommandError, match="empty"):
        call_command("ask", "   ", stdout=StringIO())


def test_graph_mode_evals_run_each_task_through_the_graph_with_its_own_memory(scripted_model, personas_seeded):
    scripted_model.rules["route"] = {"research": True, "reason": "Facts may be stored."}
    scripted_model.rules["research"] = "Memory [1] names the codename: Copper Lantern."
    scripted_model.rules["answer"] = "The codename is Copper Lantern."
    eval_run = eval_services.eval_run_create(suite="tasks", mode="graph", limit=0, enqueue=False)
    eval_run.item_ids = ["mem-001", "arith-001"]
    eval_run.total = 2
    eval_run.save()
    eval_services.eval_run_execute(run_id=eval_run.pk, model=scripted_model)
    eval_run.refresh_from_db()
    results = {r.item_id: r for r in eval_run.results.all()}
    assert results["mem-001"].passed and not results["arith-001"].passed
    run = Run.objects.get(pk=results["mem-001"].detail["run"])
    assert run.source == Run.Source.EVAL and run.status == Run.Status.DONE
    research = run.steps.get(kind="research")
    assert "COPPER LANTERN" in research.data["memories"][0]["text"]
    assert memory_store().count(level=1) == 0  # an eval run never writes the real memory
    assert "An eval run" in run.steps.get(kind="memory").content
    assert results["arith-001"].why == "no number found in the answer"
