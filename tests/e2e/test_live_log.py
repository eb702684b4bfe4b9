"""In a real browser: log in, then watch an event published by the worker appear without reload."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.livestack import ADMIN_PASSWORD, ADMIN_USER

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def login(page, stack) -> None:
    page.goto(stack.url + "/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(stack.url + "/")  # the dashboard, loaded (its scripts too) before anyone types into it


def expect_live(page, timeout: float = 15000) -> None:
    """The badge a person looks at says the page's live connection is up."""
    expect(page.locator("#ws-status.live")).to_have_text("live", timeout=timeout)


def test_login_and_see_a_worker_event_appear_live(browser, live_stack):
    page = browser.new_page()
    try:
        login(page, live_stack)
        for name in ("ALFRED", "BRICK", "ROBIN", "BABS"):
            expect(page.locator(f"#persona-{name}")).to_be_visible()
        expect_live(page)
        marker = page.evaluate("() => performance.timeOrigin")  # the page must not reload
        live_stack.publish_from_worker("e2e.hello", "seen without a reload")
        expect(page.locator("#event-log li", has_text="seen without a reload")).to_be_visible(timeout=20000)
        assert page.evaluate("() => performance.timeOrigin") == marker
        expect(page.locator("#event-log li[data-kind='e2e.hello']")).to_have_count(1)
        # A page without live content has no connection, so no badge claiming one is down.
        page.goto(live_stack.url + "/memory/")
        expect(page.locator("h1")).to_contain_text("Memory")
        expect(page.locator("#ws-status")).to_be_hidden()
    finally:
        page.close()


def test_a_reconnecting_page_catches_up_on_missed_events(browser, live_stack):
    page = browser.new_page()
    witness = browser.new_page()  # a second person, connected throughout
    try:
        login(page, live_stack)
        expect_live(page)
        login(witness, live_stack)
        expect_live(witness)
        # Cut the socket and hold the reconnect until an event has been published meanwhile.
        page.evaluate("""() => {
            const el = document.querySelector('[ws-connect]');
            el.addEventListener('htmx:wsClose', (e) => {
                e.stopPropagation();
                window.heldSocket = e.detail.socketWrapper;
            }, {once: true});
            el['htmx-internal-data'].webSocket.close();
        }""")
        page.wait_for_function("() => window.heldSocket !== undefined", timeout=10000)
        live_stack.publish_from_worker("e2e.missed", "published while offline")
        # Once the connected page shows the event it has gone out live: the offline page must not have it.
        expect(witness.locator("#event-log li", has_text="published while offline")).to_be_visible(timeout=20000)
        expect(page.locator("#event-log li[data-kind='e2e.missed']")).to_have_count(0)
        page.evaluate("() => window.heldSocket.reconnect()")
        expect(page.locator("#event-log li", has_text="published while offline")).to_be_visible(timeout=20000)
        expect_live(page)
        expect(page.locator("#event-log li[data-kind='e2e.missed']")).to_have_count(1)
    finally:
        witness.close()
        page.close()
