"""In a real browser: a person approves ALFRED's amendment in the admin and the codex changes."""
from __future__ import annotations

import pytest

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
        assert "Check every number twice." in page.inner_text("body")  # listed as pending
        page.goto(f"{scripted_stack.url}/admin/personas/codexamendment/{amendment_id}/change/")
        assert page.locator("table.diff-table").count() == 1
        page.select_option("select[name=decision]", "reject")
        page.click("input[name=_save]")
        assert "A comment is required" in page.inner_text("body")
        page.select_option("select[name=decision]", "approve")
        page.click("input[name=_save]")
        page.wait_for_selector(".messagelist .success")
        assert "codex v2" in page.inner_text(".messagelist")
        codex_text = (scripted_stack.var_dir / "config" / "codex.toml").read_text()
        assert "Check every number twice." in codex_text
        page.goto(f"{scripted_stack.url}/codex/")
        assert "v2" in page.inner_text("h1")
        assert "Check every number twice." in page.inner_text("#codex-BRICK")
    finally:
        page.close()
