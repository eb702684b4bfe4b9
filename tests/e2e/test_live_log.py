"""In a real browser: log in, then watch an event published by the worker appear without reload."""
from __future__ import annotations

import pytest

from tests.livestack import ADMIN_PASSWORD, ADMIN_USER

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def login(page, stack) -> None:
    page.goto(stack.url + "/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(stack.url + "/")


def test_login_and_see_a_worker_event_appear_live(browser, live_stack):
    page = browser.new_page()
    try:
        login(page, live_stack)
        for name in ("ALFRED", "BRICK", "ROBIN", "BABS"):
            assert page.locator(f"#persona-{name}").is_visible()
        page.wait_for_selector("#ws-status.live", timeout=15000)
        marker = page.evaluate("() => performance.timeOrigin")  # the page must not reload
        live_stack.publish_from_worker("e2e.hello", "seen without a reload")
        page.wait_for_selector("#event-log li:has-text('seen without a reload')", timeout=20000)
        assert page.evaluate("() => performance.timeOrigin") == marker
        assert page.locator("#event-log li[data-kind='e2e.hello']").count() == 1
        # A page without live content has no connection, so no badge claiming one is down.
        page.goto(live_stack.url + "/memory/")
        page.wait_for_selector("h1")
        assert page.locator("#ws-status").is_hidden()
    finally:
        page.close()


def test_a_reconnecting_page_catches_up_on_missed_events(browser, live_stack):
    page = browser.new_page()
    try:
        login(page, live_stack)
        page.wait_for_selector("#ws-status.live", timeout=15000)
        # Cut the socket and hold the reconnect until an event has been published meanwhile.
        page.evaluate("""() => {
            const el = document.querySelector('[ws-connect]');
            el.addEventListener('htmx:wsClose', (e) => { e.stopPropagation(); window.heldSocket = e.detail.socketWrapper; },
                                {once: true});
            el['htmx-internal-data'].webSocket.close();
        }""")
        page.wait_for_function("() => window.heldSocket !== undefined", timeout=10000)
        live_stack.publish_from_worker("e2e.missed", "published while offline")
        page.wait_for_timeout(1000)
        assert page.locator("#event-log li[data-kind='e2e.missed']").count() == 0
        page.evaluate("() => window.heldSocket.reconnect()")
        page.wait_for_selector("#event-log li:has-text('published while offline')", timeout=20000)
        page.wait_for_selector("#ws-status.live", timeout=15000)
        assert page.locator("#event-log li[data-kind='e2e.missed']").count() == 1
    finally:
        page.close()
