"""Shared fixtures: users, a logged-in client, and the live stack for integration tests."""
from __future__ import annotations

import shutil

import pytest

from tests.livestack import cleanup, start_stack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="ada", password="correct horse battery")


@pytest.fixture
def auth_client(client, user):
    client.force_login(user)
    return client


@pytest.fixture(scope="session")
def live_stack():
    """The product as the run command starts it: broker, Huey consumer and daphne, in a scratch var/."""
    stack = start_stack()
    yield stack
    cleanup(stack)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
