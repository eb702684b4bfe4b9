"""In a real browser: forge a tool from the Forge page and watch its attempts stream in."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.test_live_log import expect_live, login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def test_forge_a_tool_from_the_page_and_watch_the_attempts(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.goto(scripted_stack.url + "/forge/")
        expect(page.locator("#sandbox-status")).to_be_visible()
        page.fill("#id_spec", "add two integers and return the sum")
        page.click("#forge-form button[type=submit]")
        expect(page).to_have_url(re.compile(r"/forge/requests/\d+/$"))
        expect_live(page)
        marker = page.evaluate("() => performance.timeOrigin")
        # The scripted BRICK's first attempt fails in the sandbox, the second passes.
        expect(page.locator("#attempts li.attempt.failed[data-seq='1']")).to_be_visible(timeout=60000)
        expect(page.locator("#attempts li.attempt.passed[data-seq='2']")).to_be_visible(timeout=60000)
        head = page.locator("#forge-request-head")
        expect(head).to_have_attribute("data-status", "succeeded", timeout=30000)
        expect(page.locator("#attempts li[data-seq='1']")).to_contain_text("add_two_integers(2, 3) == 5: returned -1")
        expect(head).to_contain_text("add_two_integers")
        assert page.evaluate("() => performance.timeOrigin") == marker  # no reload happened
        attempts = page.locator("#attempts [data-seq]")  # exactly attempts 1 and 2, in that order
        expect(attempts).to_have_count(2)
        expect(attempts.nth(0)).to_have_attribute("data-seq", "1")
        expect(attempts.nth(1)).to_have_attribute("data-seq", "2")
        page.screenshot(path=str(scripted_stack.var_dir / "forge-page.png"), full_page=True)
        page.click("#forge-request-head a[href*='/forge/tools/']")
        expect(page.locator("#tool-code")).to_contain_text("def add_two_integers")
    finally:
        page.close()
