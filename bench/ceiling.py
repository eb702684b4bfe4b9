"""How far any choosing among BRICK's samples could take the forge: K independent samples per `tools` item,
each judged by the item's hidden tests and by the request's own examples.

    python bench/ceiling.py [--ids a,b,… | --limit N] [--samples 5] [--temperature 0.8] [--seed 0] [--out F]
    python bench/ceiling.py --report F [F ...]

Per item it counts the samples that pass the hidden tests (correct) and those that pass the request's
examples (what the forge can see). Printed: items with at least one correct sample (the ceiling of any
loop that only writes and chooses, at this many samples), items where a correct sample also passes the
examples, and items where a sample passes the examples but not the hidden tests (what the examples
cannot tell apart). The samples are asked as the forge's first request asks (forge/evals/engine.py), warmer.
Every sample runs in the product's sandbox. One line `RESULT {json}` at the end.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.evals import persona_models, run_seed  # noqa: E402
from forge.config import ForgeSettings  # noqa: E402
from forge.evals.engine import SEED, item_seed, run_hidden, sample_code  # noqa: E402
from forge.evals.suites import load_tools  # noqa: E402
from forge.toolforge import Seeds, judge, requested_name, spec_checks, static_check  # noqa: E402
from personas.inference import ModelManager, ModelsConfig  # noqa: E402


def sample_item(item, model, config: ForgeSettings, samples: int, temperature: float,
                seed: int | None = SEED) -> dict:
    name = requested_name(item.spec)
    examples = spec_checks(item.spec, name)
    seeds = Seeds(item_seed(seed, item.id))
    rows = []
    for _ in range(samples):
        started = time.perf_counter()
        code, tokens = sample_code(item, model, config, temperature=temperature, seeds=seeds)
        static_ok = static_check(code, "", config.allowed_imports).ok
        shown = bool(examples) and static_ok and all(
            r.get("ok") for r in judge(code, examples, backend=config.backend, limits=config.limits).results)
        correct = static_ok and run_hidden(code, item, config)[0]
        rows.append({"tokens": tokens, "seconds": round(time.perf_counter() - started, 2),
                     "examples": shown, "hidden": correct})
    return {"item_id": item.id, "category": item.category, "style": item.style, "has_examples": bool(examples),
            "samples": rows}


def report(rows: list[dict]) -> None:
    n = len(rows)
    any_correct = [r for r in rows if any(s["hidden"] for s in r["samples"])]
    visible = [r for r in rows if any(s["hidden"] and s["examples"] for s in r["samples"])]
    misled = [r for r in rows if any(s["examples"] and not s["hidden"] for s in r["samples"])]
    total = sum(len(r["samples"]) for r in rows)
    correct = sum(s["hidden"] for r in rows for s in r["samples"])
    print(f"{n} items, {total} samples; {correct} samples correct ({100 * correct / max(total, 1):.0f} %)")
    print(f"  items with a correct sample:                     {len(any_correct)}  "
          f"{' '.join(r['item_id'] for r in any_correct)}")
    print(f"  ... of which one also passes the examples:        {len(visible)}")
    print(f"  items where a sample passes the examples, wrong: {len(misled)}")
    for r in rows:
        marks = "".join("H" if s["hidden"] else ("e" if s["examples"] else ".") for s in r["samples"])
        print(f"    {r['item_id']:8} {r['style']:9} {marks}")
    print("RESULT " + json.dumps({"items": n, "samples": total, "correct_samples": correct,
                                  "items_with_correct": len(any_correct), "visible": len(visible),
                                  "misled": len(misled)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", default="")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="local")
    parser.add_argument("--var-dir", default=str(REPO / "var"))
    parser.add_argument("--seed", default=str(SEED), help="the run's sampler seed, as bench/evals.py's (or none)")
    parser.add_argument("--out", default="")
    parser.add_argument("--report", nargs="+", default=[])
    args = parser.parse_args()
    if args.report:
        report([json.loads(line) for name in args.report for line in Path(name).read_text().splitlines()])
        return
    items = load_tools()
    if args.ids:
        wanted = [i.strip() for i in args.ids.split(",") if i.strip()]
        by_id = {i.id: i for i in items}
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            parser.error(f"unknown item id(s): {', '.join(unknown)}")
        items = [by_id[i] for i in wanted]
    elif args.limit:
        items = items[: args.limit]
    forge_conf = dict(tomllib.loads((REPO / "config" / "settings.toml").read_text()).get("forge", {}))
    forge_conf["backend"] = args.backend
    config = ForgeSettings.from_dict(forge_conf)
    embedded = {"threads": args.threads, "n_ctx": 4096, "persona_models": persona_models("")}
    seed = run_seed(parser, args.seed)  # refused before the model loads
    model = ModelManager(ModelsConfig.from_dict({"backend": "embedded", "embedded": embedded}),
                         var_dir=Path(args.var_dir))
    print(f"{len(items)} items x {args.samples} samples at temperature {args.temperature}, "
          f"model {model.resolve('BRICK')[1]}, seed {seed}", flush=True)
    rows = []
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    for item in items:
        row = sample_item(item, model, config, args.samples, args.temperature, seed)
        rows.append(row)
        print(f"  {item.id:8} " + "".join("H" if s["hidden"] else ("e" if s["examples"] else ".")
                                           for s in row["samples"]), flush=True)
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()
    if out:
        out.close()
    report(rows)


if __name__ == "__main__":
    main()
