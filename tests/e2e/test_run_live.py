"""In a real browser: submit a task and watch the personas' steps and the answer arrive live."""
from __future__ import annotations

import pytest

from tests.e2e.test_live_log import login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def test_submit_a_task_and_watch_the_run_unfold_without_reload(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.fill("#id_task", "What is 2 + 2?")
        page.click("#task-form button[type=submit]")
        page.wait_for_selector("#task-form .ok a", timeout=10000)
        page.click("#task-form .ok a")
        page.wait_for_selector("#ws-status.live", timeout=15000)
        marker = page.evaluate("() => performance.timeOrigin")
        for persona in ("BRICK", "ROBIN", "ALFRED"):
            page.wait_for_selector(f"#steps .persona-{persona.lower()}", timeout=60000)
        page.wait_for_selector("#run-head[data-status=done] .final-answer", timeout=60000)
        assert "The answer is 4." in page.inner_text(".final-answer")
        assert page.evaluate("() => performance.timeOrigin") == marker  # no reload happened
        seqs = page.eval_on_selector_all("#steps [data-seq]", "els => els.map(e => +e.dataset.seq)")
        assert seqs == list(range(1, len(seqs) + 1))
        page.screenshot(path=str(scripted_stack.var_dir / "run-page.png"), full_page=True)
    finally:
        page.close()


def test_oversized_task_shows_a_clear_error_and_keeps_the_text(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.fill("#id_task", "x" * 8100)
        page.click("#task-form button[type=submit]")
        page.wait_for_selector("#task-form .error", timeout=10000)
        assert "limit is 8,000" in page.inner_text("#task-form .error")
        assert len(page.input_value("#id_task")) == 8100
    finally:
        page.close()
