"""The llama.cpp LoRA export: an adapter for the real embedded GGUF loads into llama.cpp and changes its answer."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from memory.finetunes.engine import FineTuneError, adapter_to_gguf
from personas.inference.embedded_backend import ensure_packaged_gguf

PROMPT = [{"role": "user", "content": "Name one primary colour of light."}]


@pytest.fixture(scope="module")
def base_gguf(tmp_path_factory) -> Path:
    return ensure_packaged_gguf(tmp_path_factory.mktemp("models"))


def _adapter(directory: Path, base: Path, *, r: int = 4, layers: int = 24, scale: float = 0.2,
             wrong_shape: bool = False) -> Path:
    """A PEFT-format adapter with random non-zero A and B on q_proj/v_proj, shaped for `base`."""
    import gguf
    from safetensors.numpy import save_file

    reader = gguf.GGUFReader(str(base))
    shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}
    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(layers):
        for module, gguf_name in (("q_proj", "attn_q"), ("v_proj", "attn_v")):
            n_in, n_out = shapes[f"blk.{i}.{gguf_name}.weight"]
            if wrong_shape:
                n_in += 1
            prefix = f"base_model.model.model.layers.{i}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.normal(0, scale, (r, n_in)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.normal(0, scale, (n_out, r)).astype(np.float32)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": 2 * r, "peft_type": "LORA"}))
    return directory


def _answer(base: Path, lora: Path | None) -> str:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(base)
    params.n_ctx = 512
    params.n_predict = 24
    params.warmup = False
    params.verbosity = 0
    if lora is not None:
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(lora), 1.0)]
    # Locked down as the embedded backend does: unix socket in a private dir, API key, no CORS.
    sock_dir = tempfile.mkdtemp(prefix="a4ps-lora-")
    params.hostnames = [os.path.join(sock_dir, "llm.sock")]
    params.api_keys = [secrets.token_urlsafe(16)]
    params.cors_origins = ""
    params.endpoint_slots = params.endpoint_metrics = params.endpoint_props = False
    try:
        server = xllamacpp.Server(params)
        reply = server.handle_chat_completions({"messages": PROMPT, "max_tokens": 24, "temperature": 0})
        return reply["choices"][0]["message"]["content"]
    finally:
        server = None
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_gguf_adapter_loads_with_the_real_base_and_changes_its_output(base_gguf, tmp_path):
    adapter = _adapter(tmp_path / "adapter", base_gguf)
    info = adapter_to_gguf(adapter, base_gguf, tmp_path / "adapter.gguf")
    assert info["architecture"] == "qwen2" and info["tensors"] == 48 and info["alpha"] == 8.0

    import gguf

    written = gguf.GGUFReader(str(tmp_path / "adapter.gguf"))
    assert written.fields["general.type"].contents() == "adapter"
    assert written.fields["adapter.type"].contents() == "lora"
    names = {t.name for t in written.tensors}
    assert {"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b", "blk.23.attn_v.weight.lora_b"} <= names

    plain = _answer(base_gguf, None)
    adapted = _answer(base_gguf, tmp_path / "adapter.gguf")
    assert plain.strip() and adapted != plain


def test_an_adapter_that_does_not_fit_the_base_is_refused(base_gguf, tmp_path):
    adapter = _adapter(tmp_path / "bad", base_gguf, layers=1, wrong_shape=True)
    with pytest.raises(FineTuneError, match="do not fit"):
        adapter_to_gguf(adapter, base_gguf, tmp_path / "bad.gguf")
    assert not (tmp_path / "bad.gguf").exists()


def test_a_promoted_adapter_is_used_by_the_model_manager_and_rollback_drops_it(base_gguf, tmp_path):
    from personas.inference import ModelManager, ModelsConfig

    adapter = adapter_to_gguf(_adapter(tmp_path / "adapter", base_gguf), base_gguf, tmp_path / "adapter.gguf")
    del adapter
    promoted: dict = {}
    config = ModelsConfig.from_dict(
        {"backend": "embedded", "embedded": {"gguf_path": str(base_gguf), "n_ctx": 1024, "max_tokens": 64}}
    )
    manager = ModelManager(config, var_dir=tmp_path / "var", override_for=lambda persona: promoted.get(persona))
    try:
        plain = manager.chat("ROBIN", PROMPT, max_tokens=24, temperature=0).content
        promoted["ROBIN"] = {"base_model": str(base_gguf), "lora_path": str(tmp_path / "adapter.gguf"),
                             "lora_scale": 1.0, "ollama_model": ""}
        adapted = manager.chat("ROBIN", PROMPT, max_tokens=24, temperature=0)
        assert adapted.load_ms > 0  # promote reloads the model with the adapter
        assert adapted.content != plain
        assert manager.chat("BRICK", PROMPT, max_tokens=24, temperature=0).content == plain  # others unchanged
        # Compare in chat asks for the bare base and for an adapter explicitly, whatever is promoted.
        bare = {"base_model": str(base_gguf), "lora_path": ""}
        assert manager.chat("ROBIN", PROMPT, max_tokens=24, temperature=0, adapter=bare).content == plain
        promoted.clear()  # rollback
        assert manager.chat("ROBIN", PROMPT, max_tokens=24, temperature=0).content == plain
        explicit = manager.chat("ROBIN", PROMPT, max_tokens=24, temperature=0,
                                adapter={"base_model": str(base_gguf), "lora_path": str(tmp_path / "adapter.gguf")})
        assert explicit.content == adapted.content  # not promoted, still the adapter's answer
    finally:
        manager.close()
