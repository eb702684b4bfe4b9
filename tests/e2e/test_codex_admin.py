"""In a real browser: a person approves ALFRED's amendment in the admin and the codex changes."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.test_live_log import login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def test_approving_an_amendment_in_the_admin_rewrites_the_codex(browser, scripted_stack):
    out = scripted_stack.manage("shell", "-c", (
        "from personas.codex import amendment_propose; "
        "a = amendment_propose(persona='BRICK', principle='Check every number twice.', rationale='Errors recur.', "
        "evidence=[]); print(a.pk)"))
    amendment_id = int(out.stdout.strip().splitlines()[-1])
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.goto(f"{scripted_stack.url}/codex/")
        pending = page.locator("section", has=page.locator("h2", has_text="Amendments awaiting a decision"))
        expect(pending).to_contain_text("Check every number twice.")  # listed as pending
        page.goto(f"{scripted_stack.url}/admin/personas/codexamendment/{amendment_id}/change/")
        expect(page.locator("table.diff-table")).to_have_count(1)
        page.select_option("select[name=decision]", "reject")
        page.click("input[name=_save]")
        # The click only starts the form post: wait for the page that comes back, not the one being left.
        expect(page.locator(".field-comment .errorlist")).to_contain_text("A comment is required")
        page.select_option("select[name=decision]", "approve")
        page.click("input[name=_save]")
        expect(page.locator(".messagelist .success")).to_contain_text("codex v2")
        codex_text = (scripted_stack.var_dir / "config" / "codex.toml").read_text()
        assert "Check every number twice." in codex_text
        page.goto(f"{scripted_stack.url}/codex/")
        expect(page.locator("h1")).to_contain_text("v2")
        expect(page.locator("#codex-BRICK")).to_contain_text("Check every number twice.")
    finally:
        page.close()
