"""On the embedded default: a question only a document in the library answers is answered from it, and the
answer cites the chunk that holds the fact."""
from __future__ import annotations

import pytest
from django.urls import reverse

from forge.evals.suites import load_tasks
from memory.documents import services
from memory.services import memory_store
from personas import runs
from personas.llm import set_model_manager
from personas.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_question_only_a_document_answers_is_answered_with_a_citation_to_its_chunk(embedded_models,
                                                                                    personas_seeded):
    item = next(t for t in load_tasks() if t.id == "doc-001")  # the garden rules: the shed's combination
    (name, text), = item.setup_documents
    set_model_manager(embedded_models)
    try:
        document, _ = services.document_add(name=name, data=text.encode())
        document.refresh_from_db()
        assert document.status == "indexed", document.error
        run = runs.run_submit(task="In the library: " + item.task)
    finally:
        set_model_manager(None)
    run.refresh_from_db()
    steps = list(run.steps.order_by("seq"))
    transcript = "\n".join(f"{s.persona} {s.kind}: {s.content[:300]}" for s in steps)
    assert run.status == Run.Status.DONE, run.error + transcript
    assert "3917" in run.final_answer, transcript
    answer = run.answer_step()
    sources = {s["n"]: s for s in answer.data["sources"]}
    document.refresh_from_db()
    shed_chunks = {c.id for c in memory_store().get_memory(document.memory_id).chunks if "3917" in c.text}
    holding = [n for n, s in sources.items() if s["kind"] == "document" and s["chunk"] in shed_chunks]
    assert holding, transcript
    cites = set(answer.data["cited"]) | set(answer.data["attributed"])
    assert cites & set(holding), f"cited {answer.data['cited']}, added {answer.data['attributed']}\n{transcript}"
    n = sorted(cites & set(holding))[0]
    chunk = sources[n]["chunk"]
    assert sources[n]["url"] == reverse("document_detail", args=[document.pk]) + f"?chunk={chunk}#chunk-{chunk}"
    assert f"[{n}]" in run.final_answer
