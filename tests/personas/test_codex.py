"""The philosophical loop: hand edits applied live, amendments applied only by a person, runs waiting."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.urls import reverse

from a4ps_site.config import ConfigError, codex
from personas import codex as codex_services
from personas import runs, settings_watch
from personas.events import event_publish
from personas.models import CodexAmendment, CodexVersion, Event, Persona, Run

pytestmark = pytest.mark.django_db(transaction=True)


def touch_later(path: Path, text: str) -> None:
    time.sleep(0.01)  # a different mtime, so the change is noticed
    path.write_text(text)


def high_dissonance_runs(n: int, task: str = "Should the city build the new bridge?") -> list[Run]:
    runs = []
    for i in range(n):
        run = Run.objects.create(task=f"{task} (variant {i})", status=Run.Status.DONE)
        event_publish(kind="high_cognitive_dissonance", source="graph", payload={"run": run.pk, "score": 0.9})
        runs.append(run)
    return runs


def test_a_valid_hand_edit_is_applied_live_and_an_invalid_one_rejected(config_dir, personas_seeded):
    path = config_dir / "codex.toml"
    original = path.read_text()
    touch_later(path, original.replace("Prefer a sound argument to a quick one.",
                                       "Prefer the simplest sound argument."))
    assert "Prefer the simplest sound argument." in codex()["BRICK"].principles  # picked up at the next read
    settings_watch.config_file_changed(name="codex.toml")
    latest = CodexVersion.objects.order_by("-number").first()
    assert latest.number == 2 and latest.reason == "hand edit of codex.toml"
    assert "+" in latest.diff and "Prefer the simplest sound argument." in latest.diff
    assert "Prefer the simplest sound argument." in Persona.objects.get(name="BRICK").principles

    touch_later(path, "[personas.BRICK\nbroken = ")
    settings_watch.config_file_changed(name="codex.toml")
    rejected = Event.objects.filter(kind="config.rejected").latest("id")
    assert "not valid TOML" in rejected.payload["error"]
    assert "Prefer the simplest sound argument." in codex()["BRICK"].principles  # the last good version stays
    assert CodexVersion.objects.count() == 2


def test_an_invalid_settings_edit_is_rejected_visibly(config_dir, auth_client):
    from a4ps_site.config import app_settings

    path = config_dir / "settings.toml"
    assert app_settings()["models"]["backend"] == "auto"  # the running site has read the good file
    touch_later(path, path.read_text().replace('backend = "auto"', 'backend = "quantum"'))
    settings_watch.config_file_changed(name="settings.toml")
    assert "quantum" in Event.objects.get(kind="config.rejected").payload["error"]
    html = auth_client.get(reverse("dashboard")).content.decode()
    assert "Configuration not applied" in html and "quantum" in html
    assert app_settings()["models"]["backend"] == "auto"  # the last good version stays in force


def test_an_amendment_cannot_take_effect_without_approval(config_dir, personas_seeded, user):
    before = (config_dir / "codex.toml").read_text()
    amendment = codex_services.amendment_propose(persona="ROBIN", principle="Name the trade-off before choosing.",
                                                 rationale="Recurring disagreement about priorities.", evidence=[])
    assert amendment.status == "proposed"
    assert (config_dir / "codex.toml").read_text() == before
    assert "Name the trade-off before choosing." not in codex()["ROBIN"].principles
    assert CodexVersion.objects.count() == 1
    with pytest.raises(ValueError, match="comment is required"):
        codex_services.amendment_reject(amendment=amendment, by=user, comment=" ")


def test_approval_rewrites_the_codex_and_changes_the_next_runs_prompts(config_dir, personas_seeded, user,
                                                                        scripted_model):
    amendment = codex_services.amendment_propose(persona="BRICK", principle="State your assumptions first.",
                                                 rationale="r", evidence=[])
    version = codex_services.amendment_approve(amendment=amendment, by=user, comment="good idea")
    assert version.number == 2 and "State your assumptions first." in version.diff
    text = (config_dir / "codex.toml").read_text()
    assert "State your assumptions first." in text and "# The codex" in text  # comments kept
    assert "State your assumptions first." in Persona.objects.get(name="BRICK").principles
    runs.run_submit(task="Is 91 prime?", user=user)
    brick_system = [c for c in scripted_model.calls if c["persona"] == "BRICK"][0]["messages"][0]["content"]
    assert "State your assumptions first." in brick_system
    assert Event.objects.filter(kind="codex.changed").exists()
    with pytest.raises(ValueError, match="already approved"):
        codex_services.amendment_approve(amendment=amendment, by=user)


def test_a_rejection_is_remembered_and_not_proposed_again(config_dir, personas_seeded, user, scripted_model):
    first = codex_services.amendment_propose(persona="ROBIN", principle="Always agree with BRICK.",
                                             rationale="fewer conflicts", evidence=[])
    first = codex_services.amendment_reject(amendment=first, by=user, comment="Agreement must be earned.")
    again = codex_services.amendment_propose(persona="robin", principle="always agree with BRICK!",
                                             rationale="still fewer conflicts", evidence=[])
    assert again is None
    assert CodexAmendment.objects.count() == 1
    # ALFRED is shown the rejection when it drafts.
    from personas.graph import prompts

    msgs = prompts.amendment(None, {"task": "t"}, {}, [{"persona": "ROBIN", "principle": first.principle,
                                                         "comment": first.comment}])
    assert "Always agree with BRICK." in msgs[-1]["content"] and "Agreement must be earned." in msgs[-1]["content"]


def test_persistent_dissonance_drafts_an_amendment_and_the_run_waits_then_resumes(config_dir, personas_seeded,
                                                                                 user, scripted_model):
    high_dissonance_runs(2)
    scripted_model.rules.update({
        "antithesis": "No. That ignores the people who live by the river.",
        "critic": {"dissonance": 0.95, "consensus": False, "reason": "Opposed."},
        "amendment": {"persona": "ROBIN", "principle": "Weigh who bears the cost of each option.",
                      "rationale": "The same conflict keeps returning."},
    })
    run = runs.run_submit(task="Should the city build the new bridge? (variant 9)", user=user)
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING
    amendment = CodexAmendment.objects.get()
    assert run.waiting_on_id == amendment.pk
    assert set(amendment.evidence_runs.values_list("id", flat=True)) >= {run.pk}
    assert amendment.evidence_runs.count() == 3
    assert not run.steps.filter(kind="answer").exists()

    codex_services.amendment_approve(amendment=amendment, by=user)  # resumes the run on commit
    run.refresh_from_db()
    assert run.status == Run.Status.DONE and run.final_answer
    decision = run.steps.get(kind="decision")
    assert "approved" in decision.content
    kinds = list(run.steps.order_by("seq").values_list("kind", flat=True))
    assert kinds.index("amendment") < kinds.index("decision") < kinds.index("answer")
    assert len(set(run.steps.values_list("key", flat=True))) == run.steps.count()


def test_unrelated_dissonance_does_not_draft_an_amendment(config_dir, personas_seeded, user, scripted_model):
    high_dissonance_runs(2, task="Completely different: the chemistry of bread")
    scripted_model.rules.update({
        "antithesis": "No. That ignores the people.",
        "critic": {"dissonance": 0.95, "consensus": False, "reason": "Opposed."},
    })
    run = runs.run_submit(task="quantum error correction codes explained", user=user)
    run.refresh_from_db()
    assert run.status == Run.Status.DONE
    assert not CodexAmendment.objects.exists()


def test_admin_lists_amendments_with_a_diff_and_requires_a_comment_to_reject(config_dir, personas_seeded,
                                                                              admin_client):
    amendment = codex_services.amendment_propose(persona="BABS", principle="Quote sources verbatim.",
                                                 rationale="accuracy", evidence=[])
    change = reverse("admin:personas_codexamendment_change", args=[amendment.pk])
    page = admin_client.get(change).content.decode()
    assert "diff-table" in page and "Quote sources verbatim." in page
    response = admin_client.post(change, {"decision": "reject", "comment": ""})
    assert response.status_code == 200 and "A comment is required" in response.content.decode()
    amendment.refresh_from_db()
    assert amendment.status == "proposed"
    admin_client.post(change, {"decision": "approve", "comment": ""})
    amendment.refresh_from_db()
    assert amendment.status == "approved"
    assert "Quote sources verbatim." in (config_dir / "codex.toml").read_text()


def test_codex_page_shows_principles_history_and_pending(config_dir, personas_seeded, auth_client):
    codex_services.amendment_propose(persona="BABS", principle="Date every source.", rationale="r", evidence=[])
    html = auth_client.get(reverse("codex")).content.decode()
    assert "Prefer a sound argument to a quick one." in html
    assert "v1" in html and "Date every source." in html


def test_config_helpers_reject_bad_codex_values():
    from a4ps_site.config import parse_codex

    with pytest.raises(ConfigError, match="missing"):
        parse_codex({"personas": {"ALFRED": {"role": "r", "system_prompt": "p"}}})


def test_an_amendment_that_only_repeats_existing_principles_is_not_drafted(config_dir, personas_seeded):
    existing = codex()["BABS"].principles
    assert codex_services.amendment_propose(persona="BABS", principle=" ".join(existing), rationale="r",
                                            evidence=[]) is None
    assert codex_services.amendment_propose(persona="BABS", principle=existing[0].upper(), rationale="r",
                                            evidence=[]) is None
    assert not CodexAmendment.objects.exists()


def test_approval_adds_one_line_and_leaves_the_rest_of_the_codex_as_it_was(config_dir, personas_seeded, user):
    amendment = codex_services.amendment_propose(persona="BRICK", principle="Name the unit of every number.",
                                                 rationale="r", evidence=[])
    codex_services.amendment_approve(amendment=amendment, by=user)
    changed = [line for line in CodexVersion.objects.order_by("-number").first().diff.splitlines()
               if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    assert changed == ['+  "Name the unit of every number.",']
