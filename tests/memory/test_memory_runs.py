"""Runs write their memory; BABS retrieves it in a later run; the Memory page browses and deletes it."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

from memory.services import memory_store
from personas import runs
from personas.models import Event

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_finished_run_is_stored_and_retrieved_by_babs_in_the_next_run(user, scripted_model, personas_seeded):
    scripted_model.rules["answer"] = "The Rhine flows through Basel, Strasbourg and Cologne."
    first = runs.run_submit(task="Which cities does the Rhine flow through?", user=user)
    first.refresh_from_db()
    memory_step = first.steps.get(kind="memory")
    assert "Stored in memory" in memory_step.content
    record = memory_store().get_memory(memory_step.data["memory"])
    assert record.run_id == first.pk and "Rhine" in record.summary
    personas = {c.persona for c in record.chunks}
    assert {"BRICK", "ROBIN", "ALFRED"} <= personas
    assert any(c.step_ids for c in record.chunks if c.persona == "BRICK")  # provenance to the step

    scripted_model.rules["route"] = {"research": True, "reason": "We discussed rivers before."}
    scripted_model.rules["research"] = "Run [1] says the Rhine passes Basel."
    second = runs.run_submit(task="Does the Rhine flow through Basel?", user=user)
    research = second.steps.get(kind="research")
    assert research.data["memories"], "BABS found nothing"
    assert all(m["run_id"] == first.pk for m in research.data["memories"])
    babs_prompt = [c for c in scripted_model.calls if c["persona"] == "BABS"][0]["messages"][-1]["content"]
    assert "Basel" in babs_prompt and f"run #{first.pk}" in babs_prompt


def test_memory_page_searches_browses_and_deletes(auth_client, user, scripted_model, personas_seeded):
    scripted_model.rules["answer"] = "Photosynthesis turns light into chemical energy."
    run = runs.run_submit(task="Explain photosynthesis briefly", user=user)
    run.refresh_from_db()
    memory_id = run.steps.get(kind="memory").data["memory"]
    page = auth_client.get(reverse("memory")).content.decode()
    assert "photosynthesis" in page.lower() and "exact" in page  # browse list and index stats
    store = memory_store()
    for table, level in (("summaries", 1), ("chunks", 3)):
        shown = re.search(rf'id="stats-{table}">(\d+) rows? · version (\d+)', page)
        assert shown, f"no row count or version for {table}"
        assert int(shown[1]) == store.count(level=level) and int(shown[2]) == store.table_versions()[table]
    assert "full-text index built 20" in page  # built when the store was created
    found = auth_client.get(reverse("memory"), {"q": "light energy"}).content.decode()
    assert f'href="{reverse("run_detail", args=[run.pk])}"' in found and "score" in found
    detail = auth_client.get(reverse("memory_detail", args=[memory_id])).content.decode()
    assert "BRICK" in detail and "Two plus two" in detail
    assert auth_client.get(reverse("memory_delete", args=[memory_id])).status_code == 405
    chunks = len(memory_store().get_memory(memory_id).chunks)
    done = auth_client.post(reverse("memory_delete", args=[memory_id]), follow=True).content.decode()
    assert f"Deleted the memory and its {chunks} chunks." in done
    assert memory_store().count(level=1) == 0
    event = Event.objects.get(kind="memory.deleted")
    assert event.payload["message"].endswith(f"deleted with {chunks} chunks")
    missing = auth_client.get(reverse("memory_detail", args=["nope"]))
    assert missing.status_code == 404
