"""The curator on the real embedded model: ALFRED's rubric comes back as schema-valid scores."""
from __future__ import annotations

import socket

import pytest

from memory.curator import curate
from memory.models import CuratorVerdict
from personas.inference import ModelManager, ModelsConfig
from tests.memory.test_curator import _run

pytestmark = pytest.mark.django_db


def _dead_host() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_alfred_judges_a_run_with_the_real_embedded_model(personas_seeded, tmp_path, settings):
    settings.VAR_DIR = settings.SHARED_DIR = tmp_path
    config = ModelsConfig.from_dict({"backend": "embedded", "ollama_host": _dead_host(),
                                     "embedded": {"n_ctx": 2048, "max_tokens": 200}})
    manager = ModelManager(config, var_dir=tmp_path)
    try:
        run = _run("What is 2 + 2? Answer briefly.")
        counts = curate(model=manager)
    finally:
        manager.close()
    assert counts["judged"] == 1
    verdict = CuratorVerdict.objects.get(run=run)
    assert verdict.error == ""
    assert set(verdict.scores) == {"reasoning", "persona_fidelity", "helpfulness"}
    assert all(1 <= v <= 10 for v in verdict.scores.values())
    assert 1 <= verdict.total <= 10 and verdict.model.endswith(".gguf")
    assert verdict.accepted == (verdict.total >= 7.0)
