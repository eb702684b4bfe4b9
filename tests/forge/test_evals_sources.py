"""Eval tasks whose answer is only in a shipped document or on a web page: graph mode searches a library of
every document the suite ships (outside the person's memory), closedbook mode finds nothing, and each web
task's page, served by the stand-in search engine, is fetched and found by BABS."""
from __future__ import annotations

import pytest

from forge.evals import services as eval_services
from forge.evals.suites import load_tasks
from memory.research.services import web_research
from memory.services import memory_search, memory_store
from personas.models import Run
from tests.memory.fake_web import FakeWeb
from tests.memory.test_web_research import web_on

pytestmark = pytest.mark.django_db(transaction=True)
TASKS = {t.id: t for t in load_tasks()}


def run_items(model, mode: str, ids: list[str]):
    eval_run = eval_services.eval_run_create(suite="tasks", mode=mode, limit=0, enqueue=False)
    eval_run.item_ids, eval_run.total = ids, len(ids)
    eval_run.save()
    eval_services.eval_run_execute(run_id=eval_run.pk, model=model)
    return {r.item_id: r for r in eval_run.results.all()}


def test_graph_mode_finds_the_answer_in_the_suite_library_and_closedbook_does_not(scripted_model, personas_seeded):
    item = TASKS["doc-001"]
    scripted_model.rules.update({"route": {"research": True, "reason": "A document may say."},
                                 "research": "The garden rules give the shed combination [1].",
                                 "answer": lambda n: "The tool shed combination is 3917 [1]."})
    graph = run_items(scripted_model, "graph", [item.id])[item.id]
    assert graph.passed, graph.why
    run = Run.objects.get(pk=graph.detail["run"])
    memories = run.steps.get(kind="research").data["memories"]
    assert item.evidence in memories[0]["text"]  # the right chunk first, among every shipped document
    assert memories[0]["source"]["kind"] == "document" and "Larkspur" in memories[0]["source"]["label"]
    assert run.answer_step().data["cited"] == [1]
    assert memory_store().count(level=1) == 0  # the library is not the person's memory

    scripted_model.rules["answer"] = "I cannot know the combination."
    closed = run_items(scripted_model, "closedbook", [item.id])[item.id]
    assert not closed.passed
    run = Run.objects.get(pk=closed.detail["run"])
    assert run.steps.get(kind="research").data["memories"] == []


def test_every_document_task_finds_its_evidence_in_the_top_five(scripted_model):
    from personas.ports import ports

    library = ports().document_library(eval_services.suite_documents())
    documents = [t for t in TASKS.values() if t.setup_documents]
    found = sum(any(t.evidence in hit["text"] for hit in library(t.task, 5)) for t in documents)
    # The scripted embedder is a bag of words: retrieval leans on the full-text half of the search here.
    assert found >= len(documents) - 1, f"{found} of {len(documents)}"


def test_each_web_task_is_answered_from_its_page_through_the_search_engine(scripted_model, config_dir):
    web_items = [t for t in TASKS.values() if t.setup_web]
    assert len(web_items) >= 5
    with FakeWeb() as web:
        web_on(config_dir, web, max_results=1)
        for item in web_items:
            (url, title, html), = item.setup_web
            path = "/" + item.id
            web.page(path, html)
            web.results = [{"url": path, "title": title, "content": ""}]
            report = web_research(query=item.task)
            assert [f["url"] for f in report["fetched"]] == [web.base + path], report
            hits = memory_search(query=item.task, k=5)
            assert any(item.evidence in h["text"] for h in hits), item.id
            assert hits[0]["source"]["kind"] == "web"
        assert web.queries == [t.task for t in web_items]
