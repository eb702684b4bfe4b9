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


def test_ask_wait_refuses_when_the_models_broker_is_down(tmp_path, personas_seeded):
    from types import SimpleNamespace

    from personas.inference.lock import BrokerModelLock
    from personas.llm import set_model_manager

    # The product's manager shares the model through the broker; here nothing answers on its socket.
    set_model_manager(SimpleNamespace(lock=BrokerModelLock(f"unix://{tmp_path / 'broker.sock'}")))
    try:
        for flag in ("--wait", "--json"):
            with pytest.raises(CommandError, match="The product is not running.*No run was recorded"):
                call_command("ask", "What is 2 + 2?", flag, stdout=StringIO(), stderr=StringIO())
    finally:
        set_model_manager(None)
    assert not Run.objects.exists()


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


def test_a_graph_mode_eval_never_drafts_amendments_or_waits(scripted_model, personas_seeded):
    from personas.models import CodexAmendment, Event

    scripted_model.rules["antithesis"] = "No: that is wrong."
    scripted_model.rules["critic"] = {"dissonance": 0.95, "consensus": False, "reason": "They disagree."}
    for _ in range(4):  # more than enough high-dissonance runs to make ALFRED draft an amendment
        runs.run_submit(task="What is the codename of the autumn release?")
    assert Run.objects.filter(status=Run.Status.WAITING).exists()  # real runs do wait
    before = Event.objects.filter(kind="high_cognitive_dissonance").count()
    amendments = CodexAmendment.objects.count()
    eval_run = eval_services.eval_run_create(suite="tasks", mode="graph", limit=0, enqueue=False)
    eval_run.item_ids, eval_run.total = ["mem-001"], 1
    eval_run.save()
    eval_services.eval_run_execute(run_id=eval_run.pk, model=scripted_model)
    run = Run.objects.get(source=Run.Source.EVAL)
    assert run.status == Run.Status.DONE
    assert Event.objects.filter(kind="high_cognitive_dissonance").count() == before
    assert CodexAmendment.objects.count() == amendments


def test_markdown_answers_are_rendered_and_scripts_neutralised(auth_client, scripted_model, personas_seeded):
    scripted_model.rules["answer"] = (
        "### Plan\n\n- **first** step\n- second step\n\n```python\nprint('hi')\n```\n\n"
        "<script>alert('x')</script> and [a link](javascript:alert(1)) <img src=x onerror=alert(2)>")
    run = runs.run_submit(task="Plan it")
    page = auth_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    start = page.index('<div class="final-answer">')
    head = page[start:page.index("</section>", start)]
    assert "<h3>Plan</h3>" in head and "<li><strong>first</strong> step</li>" in head
    assert '<pre><code class="language-python">' in head or "<pre><code>print" in head
    assert "print(&#x27;hi&#x27;)" in head or "print('hi')" in head
    assert "<script>" not in head and "&lt;script&gt;" in head  # shown as text, never run
    assert "<img" not in head and 'href="javascript:' not in head


def test_the_navigation_says_what_waits_for_a_person(auth_client, personas_seeded):
    from personas.models import CodexAmendment, Goal

    page = auth_client.get(reverse("dashboard")).content.decode()
    assert 'id="needs-you"' not in page  # nothing waits: no badge
    amendment = CodexAmendment.objects.create(persona="ROBIN", principle="Listen first.", rationale="r",
                                              codex_before="", codex_after="", diff="", fingerprint="f")
    run = Run.objects.create(task="t", status=Run.Status.WAITING, waiting_on=amendment)
    Goal.objects.create(kind=Goal.Kind.REFLECTION, text="Reflect.")
    page = auth_client.get(reverse("runs")).content.decode()
    assert 'id="needs-you"' in page and '<span class="count">2</span>' in page
    assert "1 codex amendment to approve or reject (1 run waiting)" in page
    assert "status__exact=proposed" in page and "1 goal to run or dismiss" in page
    detail = auth_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert f"/admin/personas/codexamendment/{amendment.pk}/change/" in detail


def test_a_finished_fine_tune_waits_for_a_decision_until_promoted(auth_client):
    from django.utils import timezone

    from memory.finetunes.models import FineTuneJob

    job = FineTuneJob.objects.create(persona="BRICK", base_model="base.gguf", status=FineTuneJob.Status.SUCCEEDED,
                                     finished=timezone.now())
    page = auth_client.get(reverse("runs")).content.decode()
    assert "1 finished fine-tune to promote or leave" in page
    assert reverse("finetune_detail", args=[job.pk]) in page
    FineTuneJob.objects.filter(pk=job.pk).update(promoted=True, promoted_at=timezone.now())
    assert "finished fine-tune" not in auth_client.get(reverse("runs")).content.decode()


def test_per_run_options_from_the_form_and_the_api_change_only_that_run(auth_client, scripted_model,
                                                                        personas_seeded):
    scripted_model.rules["antithesis"] = "No: that misses the point entirely."
    scripted_model.rules["critic"] = {"dissonance": 0.9, "consensus": False, "reason": "They disagree."}
    auth_client.post(reverse("run_submit"), {"task": "Q1", "max_turns": "1", "temperature": "0.3",
                                             "no_tools": "on", "no_memory": "on"})
    run = Run.objects.get(task="Q1")
    assert run.options == {"max_turns": 1, "temperature": 0.3, "tools": False, "memory": False}
    assert run.steps.filter(kind="thesis").count() == 1  # one turn, though they disagree
    calls = [c for c in scripted_model.calls if c["kind"] == "thesis"]
    assert calls and all(c["temperature"] == 0.3 and c["tools"] is None for c in calls)
    assert "Memory is off for this run" in run.steps.get(kind="memory").content
    assert memory_store().count(level=1) == 0
    bad = auth_client.post(reverse("run_submit"), {"task": "Q2", "max_turns": "99"})
    assert bad.status_code == 400 and "less than or equal to 10" in bad.content.decode()
    api = auth_client.post(reverse("api_runs"), {"task": "Q3", "options": {"memory": "no"}},
                           content_type="application/json")
    assert api.status_code == 400 and api.json()["error"] == "memory must be true or false."
    api = auth_client.post(reverse("api_runs"), {"task": "Q3", "options": {"colour": 1}},
                           content_type="application/json")
    assert api.status_code == 400 and "Unknown run option(s): colour" in api.json()["error"]
    api = auth_client.post(reverse("api_runs"), {"task": "Q3", "options": {"max_turns": 2}, "parent": run.pk},
                           content_type="application/json")
    assert api.status_code == 201 and api.json()["options"] == {"max_turns": 2} and api.json()["parent"] == run.pk


def test_follow_up_retry_and_edit_keep_the_link_to_the_parent(auth_client, scripted_model, personas_seeded):
    parent = runs.run_submit(task="Name a river in Basel.", options={"max_turns": 1})
    url = reverse("run_follow_up", args=[parent.pk])
    empty = auth_client.post(url, {"action": "follow_up", "text": "  "})
    assert empty.status_code == 400 and "This field is required" in empty.content.decode()
    done = auth_client.post(url, {"action": "follow_up", "text": "And which sea does it reach?"}, follow=True)
    child = Run.objects.get(parent=parent, task__contains="Follow-up: And which sea")
    assert f"Earlier task (run #{parent.pk}): Name a river in Basel." in child.task
    assert "The team's answer then: The answer is 4." in child.task and child.options == {"max_turns": 1}
    assert f"Follows up <a href=\"/runs/{parent.pk}/\">run #{parent.pk}</a>" in done.content.decode()
    auth_client.post(url, {"action": "retry"})
    retry = Run.objects.filter(parent=parent, task=parent.task).get()
    page = auth_client.get(reverse("run_detail", args=[parent.pk])).content.decode()
    assert f'href="/runs/{child.pk}/">#{child.pk}</a>' in page and f'href="/runs/{retry.pk}/">#{retry.pk}</a>' in page
    edit = auth_client.get(reverse("dashboard") + f"?edit={parent.pk}").content.decode()
    assert "Name a river in Basel.</textarea>" in edit and f'name="parent" value="{parent.pk}"' in edit
    assert 'name="max_turns" value="1"' in edit
    auth_client.post(reverse("run_submit"), {"task": "Name a river in Bern.", "parent": str(parent.pk)})
    assert Run.objects.get(task="Name a river in Bern.").parent == parent
    assert Client().post(url, {"action": "retry"}).status_code == 302  # login required


def test_a_run_may_speak_through_one_ollama_model(auth_client, scripted_model, personas_seeded):
    bad = auth_client.post(reverse("api_runs"), {"task": "Q", "options": {"model": "llama3.1:8b"}},
                           content_type="application/json")
    assert bad.status_code == 400 and "needs the Ollama backend" in bad.json()["error"]
    assert auth_client.post(reverse("run_submit"), {"task": "Q", "model": "bad name!"}).status_code == 400
    scripted_model.backend = "ollama"  # the double now answers as an Ollama-backed manager would
    scripted_model.resolve = lambda name: ("ollama", name)
    original = scripted_model.chat
    asked: list[str] = []

    def chat(persona_or_model, messages, **kwargs):
        asked.append(persona_or_model)
        return original("ALFRED" if persona_or_model == "llama3.1:8b" else persona_or_model, messages, **kwargs)

    scripted_model.chat = chat
    auth_client.post(reverse("run_submit"), {"task": "Q with a model", "model": "llama3.1:8b"})
    run = Run.objects.get(task="Q with a model")
    assert run.options == {"model": "llama3.1:8b"} and run.status == Run.Status.DONE
    assert asked and set(asked) == {"llama3.1:8b"}


def test_a_run_page_with_an_answer_but_no_answer_step_renders(auth_client, personas_seeded):
    run = Run.objects.create(task="Imported", status=Run.Status.DONE, final_answer="An answer [1].")
    page = auth_client.get(reverse("run_detail", args=[run.pk]))
    assert page.status_code == 200 and "An answer [1]." in page.content.decode()
