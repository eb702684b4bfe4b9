"""The autotelic loop: goals from events and idleness, autonomy, rate limits; the config watcher."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from personas import motivator
from personas.events import event_publish
from personas.models import Goal, Run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def motivator_conf(monkeypatch):
    conf = {"autonomy": "ask", "curiosity_interval_min": 30, "max_goals_per_hour": 6, "cooldown_min": 10}
    monkeypatch.setattr(motivator, "motivator_settings", lambda: conf)
    return conf


def test_high_dissonance_creates_a_synthesis_goal(motivator_conf):
    run = Run.objects.create(task="Is it fair to tax sugar?", status=Run.Status.DONE)
    event = event_publish(kind="high_cognitive_dissonance", source="graph", payload={"run": run.pk, "score": 0.8})
    goal = Goal.objects.get(source_event=event)
    assert goal.kind == "synthesis" and goal.status == "proposed"
    assert "Is it fair to tax sugar?" in goal.text and "0.80" in goal.text


def test_a_new_tool_creates_an_exploration_goal(motivator_conf):
    event = event_publish(kind="tool_created", source="forge", payload={"tool": "gcd_of_two"})
    goal = Goal.objects.get(source_event=event)
    assert goal.kind == "exploration" and "gcd_of_two" in goal.text


def test_idleness_creates_a_reflection_goal_once(motivator_conf):
    old = Run.objects.create(task="Summarise the week", status=Run.Status.DONE)
    Run.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(hours=2),
                                         finished=timezone.now() - timedelta(hours=2))
    assert motivator.goal_reflect_if_idle() is not None
    goal = Goal.objects.get()
    assert goal.kind == "reflection" and "Summarise the week" in goal.text
    assert motivator.goal_reflect_if_idle() is None  # not again within the interval


def test_no_reflection_while_busy_or_recently_active(motivator_conf):
    Run.objects.create(task="fresh", status=Run.Status.DONE)
    assert motivator.goal_reflect_if_idle() is None
    Run.objects.create(task="queued", status=Run.Status.QUEUED)
    assert motivator.goal_reflect_if_idle(now=timezone.now() + timedelta(hours=5)) is None


def test_rate_limits_hold(motivator_conf):
    motivator_conf["max_goals_per_hour"] = 2
    motivator_conf["cooldown_min"] = 0
    for i in range(5):
        event_publish(kind="tool_created", source="forge", payload={"tool": f"t{i}"})
    assert Goal.objects.count() == 2
    motivator_conf.update(max_goals_per_hour=100, cooldown_min=10)
    Goal.objects.all().delete()
    for i in range(3):
        event_publish(kind="tool_created", source="forge", payload={"tool": f"u{i}"})
    assert Goal.objects.count() == 1  # one goal of a kind per cooldown


def test_autonomy_auto_queues_the_goal_as_a_motivator_run(motivator_conf, scripted_model, personas_seeded):
    motivator_conf["autonomy"] = "auto"
    event_publish(kind="tool_created", source="forge", payload={"tool": "adder"})
    goal = Goal.objects.get()
    assert goal.status == "queued" and goal.run.source == "motivator"
    goal.run.refresh_from_db()
    assert goal.run.status == "done"


def test_motivator_runs_do_not_feed_back_into_synthesis_goals(motivator_conf):
    run = Run.objects.create(task="own goal", source=Run.Source.MOTIVATOR, status=Run.Status.DONE)
    event_publish(kind="high_cognitive_dissonance", source="graph", payload={"run": run.pk, "score": 0.9})
    assert not Goal.objects.exists()


def test_goals_panel_approve_and_dismiss(motivator_conf, auth_client, scripted_model, personas_seeded):
    event_publish(kind="tool_created", source="forge", payload={"tool": "adder"})
    goal = Goal.objects.get()
    html = auth_client.get(reverse("dashboard")).content.decode()
    assert 'id="goals"' in html and "adder" in html and "Run it" in html
    auth_client.post(reverse("goal_decide", args=[goal.pk]), {"decision": "approve"})
    goal.refresh_from_db()
    assert goal.status == "queued" and goal.run.source == "motivator"
    response = auth_client.post(reverse("goal_decide", args=[goal.pk]), {"decision": "dismiss"}, follow=True)
    assert "already queued" in response.content.decode()
    assert auth_client.get(reverse("goal_decide", args=[goal.pk])).status_code == 405


def test_the_config_watcher_reports_hand_edits(tmp_path, settings):
    from a4ps_site.watch import start_config_watcher

    settings.CONFIG_DIR = tmp_path
    (tmp_path / "codex.toml").write_text("a = 1\n")
    seen: list[str] = []
    changed = threading.Event()
    observer = start_config_watcher(lambda name: (seen.append(name), changed.set()))
    try:
        (tmp_path / "codex.toml").write_text("a = 2\n")
        (tmp_path / "notes.txt").write_text("ignored")
        assert changed.wait(10)
        assert seen == ["codex.toml"]
    finally:
        observer.stop()
        observer.join(5)
