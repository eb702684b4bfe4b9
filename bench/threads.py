"""The embedded model's generation speed per llama.cpp thread count, on an idle machine and on one kept
busy by CPU-bound processes (one per core) — the figures behind the default `[models.embedded] threads`.

    python bench/threads.py [--threads 1,2] [--tokens 64] [--rounds 3]

Greedy decoding, the same prompt every round; the
RESULT line holds the median tokens/s per (threads, load).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from personas.inference import ModelManager, ModelsConfig  # noqa: E402

PROMPT = [{"role": "user", "content": "List five everyday uses of a spreadsheet, one line each."}]


def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 31 + 7) % 1_000_003


def measure(threads: int, *, var_dir: Path, tokens: int, rounds: int) -> list[float]:
    config = ModelsConfig.from_dict({"backend": "embedded", "embedded": {"threads": threads, "n_ctx": 2048}})
    manager = ModelManager(config, var_dir=var_dir)
    try:
        manager.chat("BRICK", PROMPT, max_tokens=8, temperature=0)  # load and warm
        rates = []
        for _ in range(rounds):
            t = time.perf_counter()
            reply = manager.chat("BRICK", PROMPT, max_tokens=tokens, temperature=0)
            rates.append(reply.completion_tokens / (time.perf_counter() - t))
        return rates
    finally:
        manager.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default=",".join(str(n) for n in range(1, (os.cpu_count() or 1) + 1)))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--var-dir", default=str(REPO / "var"))
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",") if t.strip()]
    figures: dict[str, float] = {}
    print(f"{'threads':>7}  {'load':5}  tok/s (median of {args.rounds})", flush=True)
    for load in ("idle", "busy"):
        for threads in counts:
            burners = []
            if load == "busy":
                stop_at = time.time() + 3600
                burners = [multiprocessing.Process(target=_burn, args=(stop_at,), daemon=True)
                           for _ in range(os.cpu_count() or 1)]
                for process in burners:
                    process.start()
            try:
                rates = measure(threads, var_dir=Path(args.var_dir), tokens=args.tokens, rounds=args.rounds)
            finally:
                for process in burners:
                    process.terminate()
                    process.join()
            median = round(statistics.median(rates), 2)
            figures[f"threads_{threads}_{load}"] = median
            print(f"{threads:>7}  {load:5}  {median}  ({', '.join(f'{r:.1f}' for r in rates)})", flush=True)
    print("RESULT " + json.dumps(figures))


if __name__ == "__main__":
    main()
