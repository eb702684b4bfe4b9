"""In a real browser: forge a tool from the Forge page and watch its attempts stream in."""
from __future__ import annotations

import pytest

from tests.e2e.test_live_log import login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def test_forge_a_tool_from_the_page_and_watch_the_attempts(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.goto(scripted_stack.url + "/forge/")
        assert page.locator("#sandbox-status").is_visible()
        page.fill("#id_spec", "add two integers and return the sum")
        page.click("#forge-form button[type=submit]")
        page.wait_for_url("**/forge/requests/*/")
        page.wait_for_selector("#ws-status.live", timeout=15000)
        marker = page.evaluate("() => performance.timeOrigin")
        # The scripted BRICK's first attempt fails in the sandbox, the second passes.
        page.wait_for_selector("#attempts li.attempt.failed[data-seq='1']", timeout=60000)
        page.wait_for_selector("#attempts li.attempt.passed[data-seq='2']", timeout=60000)
        page.wait_for_selector("#forge-request-head[data-status=succeeded]", timeout=30000)
        assert "AssertionError" in page.inner_text("#attempts li[data-seq='1']")
        assert "add_two_integers" in page.inner_text("#forge-request-head")
        assert page.evaluate("() => performance.timeOrigin") == marker  # no reload happened
        assert page.eval_on_selector_all("#attempts [data-seq]", "els => els.map(e => +e.dataset.seq)") == [1, 2]
        page.screenshot(path=str(scripted_stack.var_dir / "forge-page.png"), full_page=True)
        page.click("#forge-request-head a[href*='/forge/tools/']")
        assert "def add_two_integers" in page.inner_text("#tool-code")
    finally:
        page.close()
