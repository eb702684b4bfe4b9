"""In a real browser: start the sandbox self-test from its page and watch the matrix fill in."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from forge.selftest import ATTACKS
from tests.e2e.test_live_log import login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def test_the_self_test_button_runs_the_quick_pass_and_shows_the_evidence(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.goto(scripted_stack.url + "/forge/")
        page.click("#selftest-link")
        expect(page.locator("#selftest")).to_have_attribute("data-status", "none")
        for box in page.locator("#selftest-form input[name=backend]:not([disabled])").all():
            if box.get_attribute("value") != "local":
                box.uncheck()
        page.check("#selftest-form input[value=local]")
        page.check("#selftest-quick")
        page.click("#selftest-start")
        # the worker runs it; the section follows it every 2 s until it is done
        expect(page.locator("#selftest")).to_have_attribute("data-status", "done", timeout=120000)
        expect(page.locator("#selftest-summary")).to_have_text("Every escape was contained.")
        rows = page.locator("#selftest-local tr.cell")
        expect(rows).to_have_count(sum(1 for a in ATTACKS if a.quick))
        expect(page.locator("#selftest-local tr.cell.escaped")).to_have_count(0)
        expect(page.locator("#selftest-local tr[data-key=net-socketpair]")).to_contain_text("Operation not permitted")
        page.screenshot(path=str(scripted_stack.var_dir / "selftest-page.png"), full_page=True)
    finally:
        page.close()
