"""Benchmark the ModelManager's embedded path against the bare xllamacpp and sentence-transformers calls."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from personas.inference import ModelManager, ModelsConfig  # noqa: E402
from personas.inference.embedded_backend import (  # noqa: E402
    PACKAGED_GGUF_SHA256,
    PACKAGED_GGUF_SIZE,
    ensure_packaged_gguf,
    verify_gguf,
)

PROMPT = [{"role": "user", "content": "Explain in a few sentences why unit tests are useful."}]
SENTENCES = [
    f"Sentence number {i} talks about {topic} in a plain, ordinary way."
    for i, topic in enumerate(
        ["memory", "tools", "codex rules", "fine-tuning", "dissonance", "goals", "images", "graphs"] * 32
    )
]


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--var-dir", default=str(REPO / "var"), help="where the assembled GGUF lives")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    var_dir = Path(args.var_dir)
    figures: dict[str, float | int | str] = {}

    # GGUF preparation: first run assembles; later runs only check the sidecar.
    t = time.perf_counter()
    gguf = ensure_packaged_gguf(var_dir / "models")
    figures["gguf_prepare_ms"] = round(_ms(t), 1)
    t = time.perf_counter()
    verify_gguf(gguf, sha256=PACKAGED_GGUF_SHA256, size=PACKAGED_GGUF_SIZE)
    figures["gguf_verify_cached_ms"] = round(_ms(t), 2)

    config = ModelsConfig.from_dict({"backend": "embedded", "embedded": {"n_ctx": 2048, "max_tokens": args.max_tokens}})
    mm = ModelManager(config, var_dir=var_dir)
    backend = mm._embedded_backend()

    # Load / unload / reload cost of the in-process model.
    t = time.perf_counter()
    backend.ensure_loaded(gguf)
    figures["model_load_ms"] = round(_ms(t), 1)
    t = time.perf_counter()
    backend.unload()
    figures["model_unload_ms"] = round(_ms(t), 1)
    first = mm.chat("BRICK", PROMPT, max_tokens=args.max_tokens, temperature=0)
    figures["model_reload_ms_reported"] = first.load_ms
    raw = backend.raw_server

    raw_request = {"messages": PROMPT, "max_tokens": args.max_tokens, "temperature": 0}
    raw.handle_chat_completions(raw_request)  # warm both paths onto the same cached prompt

    mgr_rates: list[float] = []
    mgr_stream_rates: list[float] = []
    raw_rates: list[float] = []
    # Share of wall time spent inside the engine, per path. Machine load slows the engine for
    # both paths alike, so the ratio of these shares isolates what the manager itself adds.
    mgr_share: list[float] = []
    mgr_stream_share: list[float] = []
    raw_share: list[float] = []
    tokens = 0

    def run_raw() -> None:
        t = time.perf_counter()
        r = raw.handle_chat_completions(raw_request)
        wall = time.perf_counter() - t
        raw_rates.append(r["usage"]["completion_tokens"] / wall)
        tm = r["timings"]
        raw_share.append((tm["prompt_ms"] + tm["predicted_ms"]) / 1000 / wall)

    def run_mgr(stream: bool) -> None:
        nonlocal tokens
        t = time.perf_counter()
        res = mm.chat("BRICK", PROMPT, max_tokens=args.max_tokens, temperature=0,
                      on_token=(lambda piece: None) if stream else None)
        wall = time.perf_counter() - t
        (mgr_stream_rates if stream else mgr_rates).append(res.completion_tokens / wall)
        (mgr_stream_share if stream else mgr_share).append(res.engine_ms / 1000 / wall)
        tokens = res.completion_tokens

    for i in range(args.rounds):
        # Alternate the order so drift in machine load hits every side alike.
        order = [run_raw, lambda: run_mgr(False), lambda: run_mgr(True)]
        for step in order if i % 2 == 0 else order[::-1]:
            step()

    figures["gen_tokens"] = tokens
    figures["raw_tok_s"] = round(statistics.median(raw_rates), 2)
    figures["manager_tok_s"] = round(statistics.median(mgr_rates), 2)
    figures["manager_stream_tok_s"] = round(statistics.median(mgr_stream_rates), 2)
    figures["manager_vs_raw_wall"] = round(figures["manager_tok_s"] / figures["raw_tok_s"], 3)
    figures["manager_stream_vs_raw_wall"] = round(figures["manager_stream_tok_s"] / figures["raw_tok_s"], 3)
    figures["raw_engine_share"] = round(statistics.median(raw_share), 4)
    figures["manager_engine_share"] = round(statistics.median(mgr_share), 4)
    figures["manager_stream_engine_share"] = round(statistics.median(mgr_stream_share), 4)
    figures["manager_vs_raw"] = round(figures["manager_engine_share"] / figures["raw_engine_share"], 4)
    figures["manager_stream_vs_raw"] = round(figures["manager_stream_engine_share"] / figures["raw_engine_share"], 4)

    # Embeddings: first call includes loading torch + MiniLM.
    t = time.perf_counter()
    mm.embed(["warm up"])
    figures["embed_load_ms"] = round(_ms(t), 1)
    t = time.perf_counter()
    vectors = mm.embed(SENTENCES)
    mgr_eps = len(SENTENCES) / (time.perf_counter() - t)
    st_model = mm._minilm()._load()
    t = time.perf_counter()
    st_model.encode(SENTENCES, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    raw_eps = len(SENTENCES) / (time.perf_counter() - t)
    figures["embed_texts"] = len(SENTENCES)
    figures["embed_dim"] = int(vectors.shape[1])
    figures["manager_embed_texts_s"] = round(mgr_eps, 1)
    figures["raw_embed_texts_s"] = round(raw_eps, 1)
    figures["embed_manager_vs_raw"] = round(mgr_eps / raw_eps, 3)
    mm.close()

    rows = [
        ("GGUF prepare (assemble or verify)", f"{figures['gguf_prepare_ms']} ms"),
        ("GGUF verify, cached sidecar", f"{figures['gguf_verify_cached_ms']} ms"),
        ("model load (xllamacpp Server)", f"{figures['model_load_ms']} ms"),
        ("model unload", f"{figures['model_unload_ms']} ms"),
        ("model reload (reported load_ms)", f"{figures['model_reload_ms_reported']} ms"),
        (f"raw binding, {tokens} tokens (wall)", f"{figures['raw_tok_s']} tok/s"),
        ("ModelManager.chat (wall)", f"{figures['manager_tok_s']} tok/s  (x{figures['manager_vs_raw_wall']} of raw)"),
        ("ModelManager.chat streaming (wall)",
         f"{figures['manager_stream_tok_s']} tok/s  (x{figures['manager_stream_vs_raw_wall']} of raw)"),
        ("engine share of wall time: raw", f"{figures['raw_engine_share']}"),
        ("engine share: ModelManager.chat",
         f"{figures['manager_engine_share']}  (x{figures['manager_vs_raw']} of raw)"),
        ("engine share: ModelManager streaming",
         f"{figures['manager_stream_engine_share']}  (x{figures['manager_stream_vs_raw']} of raw)"),
        ("embedding model load", f"{figures['embed_load_ms']} ms"),
        (f"raw sentence-transformers, {len(SENTENCES)} texts", f"{figures['raw_embed_texts_s']} texts/s"),
        ("ModelManager.embed",
         f"{figures['manager_embed_texts_s']} texts/s  (x{figures['embed_manager_vs_raw']} of raw)"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 30}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    print("RESULT " + json.dumps(figures))


if __name__ == "__main__":
    main()
