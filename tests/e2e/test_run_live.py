"""In a real browser: submit a task and watch the personas' steps and the answer arrive live."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.test_live_log import expect_live, login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def test_submit_a_task_and_watch_the_run_unfold_without_reload(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.fill("#id_task", "What is 2 + 2?")
        page.click("#task-form button[type=submit]")
        run_link = page.locator("#task-form .ok a")
        expect(run_link).to_contain_text(re.compile(r"run #\d+"), timeout=10000)
        run_link.click()
        # The dashboard is live too: be on the run's own page before trusting the badge.
        expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
        run_id = int(re.search(r"/runs/(\d+)/$", page.url).group(1))
        expect_live(page)
        marker = page.evaluate("() => performance.timeOrigin")
        for persona in ("BRICK", "ROBIN", "ALFRED"):
            expect(page.locator(f"#steps .persona-{persona.lower()}").first).to_be_visible(timeout=60000)
        expect(page.locator("#run-head")).to_have_attribute("data-status", "done", timeout=60000)
        expect(page.locator("#run-head .final-answer")).to_contain_text("The answer is 4.")
        assert page.evaluate("() => performance.timeOrigin") == marker  # no reload happened
        # The page ends up showing every recorded step, numbered 1..n in order, without a reload.
        response = page.request.get(f"{scripted_stack.url}/api/runs/{run_id}/")
        assert response.ok, response.status
        recorded = [step["seq"] for step in response.json()["steps"]]
        assert recorded == list(range(1, len(recorded) + 1)), recorded
        steps = page.locator("#steps [data-seq]")
        expect(steps).to_have_count(len(recorded))
        for i, seq in enumerate(recorded):
            expect(steps.nth(i)).to_have_attribute("data-seq", str(seq))
        # The budget bar followed the steps, and the diagram lit up the nodes the run went through.
        expect(page.locator("#run-budget meter").first).to_be_visible()
        expect(page.locator("#run-budget")).to_contain_text(re.compile(r"\d+ / 3000"))
        expect(page.locator("#visited-nodes .visited-mark[data-node=alfred_synthesis]")).to_have_count(1)
        lit = page.locator('.graph-svg rect[data-node="brick_thesis"]')
        expect(lit).to_have_css("fill", "rgb(255, 243, 191)")
        expect(page.locator('.graph-svg rect[data-node="tool_forge"]')).to_have_css("fill", "rgb(255, 255, 255)")
        page.screenshot(path=str(scripted_stack.var_dir / "run-page.png"), full_page=True)
    finally:
        page.close()


def test_oversized_task_shows_a_clear_error_and_keeps_the_text(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.fill("#id_task", "x" * 8100)
        page.click("#task-form button[type=submit]")
        expect(page.locator("#task-form .error")).to_contain_text("limit is 8,000", timeout=10000)
        expect(page.locator("#id_task")).to_have_value("x" * 8100)
    finally:
        page.close()
