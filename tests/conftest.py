"""Shared fixtures: users, a logged-in client, and the live stack for integration tests."""
from __future__ import annotations

import shutil

import pytest

from tests.livestack import ROOT, cleanup, start_stack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.fixture(autouse=True)
def isolated_var(tmp_path, settings):
    """Each test gets its own var/ (checkpoints, memory, images), so no state leaks between tests. The
    shared dir is var/ itself, as on one machine without A4PS_SHARED_DIR."""
    var = tmp_path / "var"
    var.mkdir()
    settings.VAR_DIR = var
    settings.SHARED_DIR = var
    yield var
    from memory.services import reset_stores

    reset_stores()


@pytest.fixture
def config_dir(tmp_path, settings):
    """A private copy of config/, so a test can edit codex.toml and settings.toml."""
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    settings.CONFIG_DIR = target
    return target


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


@pytest.fixture
def scripted_model():
    """Install a scripted model as the process-wide ModelManager for the test."""
    from personas.llm import set_model_manager
    from tests.personas.scripted import ScriptedModel

    model = ScriptedModel()
    set_model_manager(model)
    yield model
    set_model_manager(None)


@pytest.fixture
def personas_seeded(db):
    from personas.persona_state import persona_sync_from_codex

    return persona_sync_from_codex()


@pytest.fixture(scope="module")
def embedded_models(tmp_path_factory):
    """The embedded default a new user gets: the lineup config/settings.toml ships, on the real weights."""
    import tomllib

    from personas.inference import ModelManager, ModelsConfig

    shipped = tomllib.loads((ROOT / "config" / "settings.toml").read_text())["models"]["embedded"]
    config = ModelsConfig.from_dict({"backend": "embedded", "embedded": {
        "n_ctx": 4096, "persona_models": shipped.get("persona_models", {})}})
    manager = ModelManager(config, var_dir=tmp_path_factory.mktemp("models"))
    yield manager
    manager.close()


@pytest.fixture(scope="session")
def scripted_stack():
    """The run command without its worker, plus a Huey consumer speaking through the scripted model."""
    stack = start_stack(args=("--no-worker",))
    stack.start_worker(SCRIPTED_DELAY="0.15")
    yield stack
    cleanup(stack)
