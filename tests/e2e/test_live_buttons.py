"""In a real browser: buttons inside partials the server pushed over the socket work (they carry no
CSRF field of their own; the page's htmx headers do). Each case waits for the pushed update to have
replaced the element first, then clicks."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.test_live_log import expect_live, login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def _shell(stack, code: str) -> str:
    import subprocess

    try:
        return stack.manage("shell", "-c", code).stdout.strip().splitlines()[-1]
    except subprocess.CalledProcessError as exc:
        raise AssertionError(f"manage.py shell failed:\n{exc.stderr[-3000:]}") from None


def _queued_run(stack, task: str) -> int:
    """An active run no worker will take: one waiting for a person's decision (the dispatcher only
    claims queued runs), so it stays cancellable however busy the stack's worker is."""
    return int(_shell(stack, "from personas.models import Run; "
                             f"print(Run.objects.create(task={task!r}, status='waiting').pk)"))


def _push_run(stack, run_id: int) -> None:
    _shell(stack, "from personas.models import Run; from personas.runs import run_broadcast; "
                  f"run_broadcast(run=Run.objects.get(pk={run_id}), created=True); print('ok')")


def _mark_old(page, selector: str) -> None:
    page.locator(selector).evaluate("el => el.dataset.beforePush = '1'")


def _status(stack, run_id: int) -> str:
    with stack.db() as conn:
        return conn.execute("select status from personas_run where id=?", (run_id,)).fetchone()[0]


def test_queue_cancel_inside_a_pushed_queue(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        expect_live(page)
        _mark_old(page, "#run-queue")
        run_id = _queued_run(scripted_stack, "e2e: cancel me from the queue")
        _push_run(scripted_stack, run_id)
        expect(page.locator("#run-queue:not([data-before-push])")).to_be_visible()  # the pushed copy
        row = page.locator("#run-queue li", has_text="e2e: cancel me from the queue")
        row.locator("button", has_text="Cancel").click()
        scripted_stack.wait_for("select status from personas_run where id=?", (run_id,), timeout=30,
                                until=lambda r: r[0] == "cancelled")
    finally:
        page.close()


def test_run_page_cancel_after_its_header_was_pushed(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        run_id = _queued_run(scripted_stack, "e2e: cancel me on my page")
        page.goto(f"{scripted_stack.url}/runs/{run_id}/")
        expect_live(page)
        _mark_old(page, "#run-head")
        _push_run(scripted_stack, run_id)
        expect(page.locator("#run-head:not([data-before-push])")).to_be_visible()
        page.locator("#run-head button", has_text="Cancel run").click()
        scripted_stack.wait_for("select status from personas_run where id=?", (run_id,), timeout=30,
                                until=lambda r: r[0] == "cancelled")
        expect(page.locator("#run-head")).to_have_attribute("data-status", "cancelled")
    finally:
        page.close()


def test_goal_buttons_inside_a_pushed_goals_panel(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        expect_live(page)
        _mark_old(page, "#goals")
        ids = _shell(scripted_stack, (
            "from personas.models import Goal; from personas.motivator import _broadcast_goals; "
            "a = Goal.objects.create(kind='reflection', text='e2e: run this goal'); "
            "b = Goal.objects.create(kind='reflection', text='e2e: dismiss this goal'); "
            "_broadcast_goals(); print(a.pk, b.pk)"))
        run_goal, dismiss_goal = (int(x) for x in ids.split())
        expect(page.locator("#goals:not([data-before-push])")).to_be_visible()
        page.locator(f"#goal-{run_goal} button", has_text="Run it").click()
        scripted_stack.wait_for("select status, run_id from personas_goal where id=?", (run_goal,), timeout=30,
                                until=lambda r: r[0] == "queued" and r[1])
        # The panel was pushed again by that decision: the other goal's button is inside the new copy.
        page.locator(f"#goal-{dismiss_goal} button", has_text="Dismiss").click()
        scripted_stack.wait_for("select status from personas_goal where id=?", (dismiss_goal,), timeout=30,
                                until=lambda r: r[0] == "dismissed")
        expect(page.locator(f"#goal-{dismiss_goal}")).to_contain_text("dismissed")
    finally:
        page.close()


def test_fine_tune_cancel_inside_a_pushed_status(browser, scripted_stack):
    from tests.e2e.test_finetune_live import _prepare

    dataset_id = _prepare(scripted_stack, name="e2e cancel")
    # Long answers to the held-out prompts keep the job going after training, so that Cancel lands
    # before it ends however late the pushed status arrives on a busy machine.
    job_id = int(_shell(scripted_stack, (
        "from memory.models import GoldenDataset; from memory.finetunes.services import finetune_create; "
        f"job = finetune_create(dataset=GoldenDataset.objects.get(pk={dataset_id}), "
        "hyperparameters={'epochs': 100, 'max_steps': 0, 'learning_rate': 0.001, 'eval_fraction': 0.2, "
        "'eval_max_new_tokens': 1024}); "
        "print(job.pk)")))
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.goto(f"{scripted_stack.url}/memory/finetunes/{job_id}/")
        expect_live(page)
        _mark_old(page, "#finetune-status")
        # A progress update from the worker replaces the status partial; Cancel is inside the new copy.
        expect(page.locator("#finetune-status:not([data-before-push])[data-status=running]")).to_be_visible(
            timeout=120000)
        page.click("#cancel-job")
        scripted_stack.wait_for("select status from memory_finetunejob where id=?", (job_id,), timeout=120,
                                until=lambda r: r[0] == "cancelled")
        expect(page.locator("#job-status")).to_have_text("cancelled", timeout=30000)
    finally:
        page.close()
