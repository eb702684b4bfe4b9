"""Fine-tune throughput: training tokens/s through the job's loop (memory/finetunes/engine.py)
next to a plain PEFT loop.

    python bench/finetune.py [--steps 30 --hidden 256 --layers 4 --max-len 256]   # a model built from a config
    python bench/finetune.py --base var/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --steps 5
    python bench/finetune.py --start --base var/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
        # a job's start: loading a GGUF base by dequantising it, then from the dequantised cache
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory.finetunes import engine as ft  # noqa: E402


def build_model(directory: Path, hidden: int, layers: int) -> Path:
    """A randomly initialised Qwen2 of the given size with a byte-level tokenizer (no download)."""
    from tests.memory.tiny_lm import build_tiny_model

    return build_tiny_model(directory, hidden=hidden, layers=layers)


def dataset(n: int, words: int) -> list[list[dict[str, str]]]:
    filler = " ".join(["the team weighs every claim carefully"] * (words // 6 + 1))
    return [[{"role": "system", "content": "You are BRICK, the analyst."},
             {"role": "user", "content": f"Question {i}: {filler}"},
             {"role": "assistant", "content": f"Answer {i}: {filler}"}] for i in range(n)]


def plain_peft(model, tokenizer, chats, hyper: ft.Hyperparameters) -> tuple[int, float, list[float]]:
    """The reference: the textbook PEFT loop on the same encoded data, no callbacks or bookkeeping."""
    import torch

    encoded = [ft.encode(tokenizer, c, hyper.max_len) for c in chats]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hyper.learning_rate)
    model.train()
    tokens, losses = 0, []
    started = time.perf_counter()
    for step in range(hyper.max_steps):
        ids, labels = encoded[step % len(encoded)]
        out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += len(ids)
        losses.append(out.loss.item())
    return tokens, time.perf_counter() - started, losses


def start(base: Path) -> None:
    """Seconds from a job's start to a trainable model: cold (dequantise and cache) and from the cache."""
    import torch

    with tempfile.TemporaryDirectory(prefix="a4ps-bench-cache-") as cache:
        timings = {}
        models = []
        for name in ("dequantise", "cached"):
            lines: list[str] = []
            started = time.perf_counter()
            model, _tok, _ = ft.load_base(base, log=lines.append, cache_dir=Path(cache))
            timings[name] = round(time.perf_counter() - started, 1)
            print(f"{name:<12}{timings[name]:>8} s   " + " | ".join(lines))
            models.append(model.state_dict())
        same = all(torch.equal(models[0][k], models[1][k]) for k in models[0])
        size = sum(r["bytes"] for r in ft.cached_bases(Path(cache)))
    print(f"cache on disk: {size / 1e9:.2f} GB; weights identical: {same}; "
          f"speed-up {timings['dequantise'] / max(timings['cached'], 0.1):.0f}x")
    print("RESULT " + json.dumps({"dequantise_s": timings["dequantise"], "cached_s": timings["cached"],
                                  "cache_bytes": size, "identical": same}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="", help="a model directory or GGUF (default: one built from a config)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--start", action="store_true", help="time loading --base cold and from the cache")
    args = parser.parse_args()
    if args.start:
        if not args.base.endswith(".gguf"):
            parser.error("--start needs --base <a GGUF file>")
        start(Path(args.base))
        return

    import torch

    with tempfile.TemporaryDirectory(prefix="a4ps-bench-ft-") as tmp:
        base = Path(args.base) if args.base else build_model(Path(tmp) / "model", args.hidden, args.layers)
        hyper = ft.Hyperparameters.from_dict({"max_steps": args.steps, "epochs": 100, "max_len": args.max_len,
                                              "learning_rate": 1e-3})
        chats = dataset(args.examples, args.max_len)
        rows = {}
        # One untimed pass first: the first loop in a process pays for kernel and allocator warm-up.
        model, tok, backend = ft.load_base(base, max_len=args.max_len, log=lambda _: None)
        plain_peft(ft.attach_lora(model, hyper, backend=backend), tok, chats,
                   ft.Hyperparameters.from_dict({**hyper.to_dict(), "max_steps": 3}))
        for name in ("plain_peft", "job"):
            torch.manual_seed(0)
            model, tok, backend = ft.load_base(base, max_len=args.max_len, log=lambda _: None)
            model = ft.attach_lora(model, hyper, backend=backend)
            if name == "job":
                result = ft.train_lora(model, tok, chats, hyper, on_step=lambda _: None, should_stop=lambda: False,
                                       log=lambda _: None, backend=backend)
                tokens, seconds, losses = result.tokens, result.seconds, result.losses
            else:
                tokens, seconds, losses = plain_peft(model, tok, chats, hyper)
            rows[name] = {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
                          "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
                          "finite": all(math.isfinite(x) for x in losses)}
            del model
        params = sum(p.numel() for p in ft.load_base(base, log=lambda _: None)[0].parameters())

    print(f"model: {base if args.base else 'built from a config'} ({params / 1e6:.1f} M parameters), "
          f"{args.steps} steps, max_len {args.max_len}, torch threads {torch.get_num_threads()}")
    print(f"{'loop':<12}{'tokens':>10}{'seconds':>10}{'tokens/s':>12}{'first loss':>12}{'last loss':>12}")
    for name, r in rows.items():
        print(f"{name:<12}{r['tokens']:>10}{r['seconds']:>10}{r['tokens_per_s']:>12}{r['first_loss']:>12}"
              f"{r['last_loss']:>12}")
    ratio = rows["job"]["tokens_per_s"] / rows["plain_peft"]["tokens_per_s"]
    print(f"job / plain PEFT throughput: {ratio:.3f}")
    print("RESULT " + json.dumps({
        "job_tokens_per_s": rows["job"]["tokens_per_s"], "plain_peft_tokens_per_s": rows["plain_peft"]["tokens_per_s"],
        "ratio": round(ratio, 3), "steps": args.steps, "max_len": args.max_len, "params_m": round(params / 1e6, 2),
        "job_last_loss": rows["job"]["last_loss"], "plain_last_loss": rows["plain_peft"]["last_loss"],
    }))


if __name__ == "__main__":
    main()
