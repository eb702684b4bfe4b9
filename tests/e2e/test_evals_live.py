"""In a real browser: start a small eval from the Evals page, watch it run live, then find it on the scoreboard."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.test_live_log import expect_live, login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def test_start_an_eval_watch_it_finish_and_see_it_on_the_scoreboard(browser, scripted_stack):
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.goto(scripted_stack.url + "/forge/evals/")
        expect(page.locator("#eval-start")).to_be_visible()
        page.select_option("#id_suite", "tools")
        page.select_option("#id_mode", "single")
        page.fill("#id_limit", "2")
        page.click("#eval-start button[type=submit]")

        expect(page).to_have_url(re.compile(r"/forge/evals/\d+/$"))
        run_id = int(re.search(r"/forge/evals/(\d+)/$", page.url).group(1))
        expect_live(page)
        head = page.locator(f"#eval-run-head-{run_id}")
        expect(page.locator("#eval-progress")).to_have_text("2 of 2 items", timeout=60000)
        expect(page.locator("#eval-status")).to_have_text("done", timeout=60000)
        expect(head).to_have_attribute("data-status", "done")
        # The scripted BRICK writes add_two_integers whatever it is asked: both items fail their hidden tests.
        expect(page.locator("#eval-pass-rate")).to_have_text("0% passed (0)")
        rows = page.locator("#eval-results li.eval-result")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("str-001")
        expect(rows.nth(1)).to_contain_text("str-002")
        expect(rows.nth(0)).to_have_class(re.compile(r"\bfailed\b"))
        expect(rows.nth(0).locator(".why")).to_contain_text("NameError")
        expect(page.get_by_text("Waiting for a worker")).to_be_hidden()  # no stale placeholder under the rows
        page.screenshot(path=str(scripted_stack.var_dir / "eval-run-page.png"), full_page=True)

        page.click("main a:text-is('← Evals')")
        expect(page).to_have_url(re.compile(r"/forge/evals/$"))
        expect(page.locator(f"#eval-run-row-{run_id}")).to_have_attribute("data-status", "done")
        chart = page.locator("#scoreboard svg.chart")
        expect(chart).to_be_visible()
        expect(chart.locator("circle title", has_text=f"#{run_id} tools/single: 0%")).to_have_count(1)
        legend = page.locator("#scoreboard .legend li", has_text="tools / single")
        expect(legend).to_contain_text(f"latest #{run_id} 0%")
        page.screenshot(path=str(scripted_stack.var_dir / "evals-page.png"), full_page=True)
    finally:
        page.close()
