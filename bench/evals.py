"""The eval suites on the real embedded model, mode beside mode: pass rates per category, tokens, seconds.

    python bench/evals.py --suite tools [--modes forge,single,resample] [--limit N] [--threads 1] [--seed 0] [--out F]
    python bench/evals.py --suite tasks [--modes single,graph,closedbook] [--category C] [--limit N | --ids …]
                                        [--keep-scratch] [--out F]
    python bench/evals.py --report F [F ...]     # the same table from saved --out files (e.g. modes run apart)

The tasks suite's graph mode is a full run through the four personas; it needs the database, so it runs
in a scratch var/ (migrated here; the model file is linked from --var-dir) with the shipped config, the
embedded backend and the [graph] settings and budgets of config/settings.toml.

Runs the same engine as `manage.py evals run` (forge/evals/engine.py) without a database: the embedded
llama.cpp model through ModelManager (each persona on its model of the shipped lineup; the forge writes with
BRICK's), the forge settings of config/settings.toml, the product's
sandbox. The forge runs first so that `resample` gets the forge's own token budget per item. Sampling is
seeded per item (--seed), so two runs of one variant draw the same samples and a difference between two
variants is theirs, not the draw's. Prints a table, then one line `RESULT {json}`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forge.config import ForgeSettings  # noqa: E402
from forge.evals.engine import SEED, TASK_MODES, TOOL_MODES, ItemResult, run_tool_items, summarise  # noqa: E402
from forge.evals.suites import load_tools  # noqa: E402
from personas.inference import ModelManager, ModelsConfig  # noqa: E402


def persona_models(spec: str) -> dict[str, str]:
    """The shipped lineup ([models.embedded.persona_models] of config/settings.toml) with the
    PERSONA=MODEL,… of --persona-models over it; a GGUF path is made absolute."""
    from personas.inference.packaged import PACKAGED_MODELS

    settings_toml = tomllib.loads((REPO / "config" / "settings.toml").read_text())
    chosen = dict(settings_toml.get("models", {}).get("embedded", {}).get("persona_models", {}))
    for pair in (p for p in spec.split(",") if p.strip()):
        name, _, model = pair.partition("=")
        model = model.strip()
        chosen[name.strip().upper()] = model if model in PACKAGED_MODELS else str(Path(model).resolve())
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["tools", "tasks"], default="tools")
    parser.add_argument("--modes", default="", help="comma-separated, of " + ", ".join(TOOL_MODES) +
                        " (tools; default all) or " + ", ".join(TASK_MODES) + " (tasks; default all)")
    parser.add_argument("--limit", type=int, default=0, help="the first N items only (0 = all)")
    parser.add_argument("--ids", default="", help="comma-separated item ids instead of --limit")
    parser.add_argument("--category", default="", help="tasks: only this category (e.g. documents)")
    parser.add_argument("--var-dir", default=str(REPO / "var"),
                        help="where the assembled GGUF lives (models/) and the model lock: bench processes that "
                             "share one take turns, so each timed process needs its own")
    parser.add_argument("--keep-scratch", action="store_true",
                        help="tasks: keep the scratch var/ (the runs' database and logs) instead of removing it")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads (0 = the product's default, one core fewer than the machine has)")
    parser.add_argument("--backend", default="", help="sandbox backend (default: [forge] backend of settings.toml)")
    parser.add_argument("--forge", default="", metavar="KEY=VALUE,…",
                        help="tools: [forge] settings to use instead of settings.toml's, in TOML values "
                             "(e.g. edge_cases=true,max_attempts=4)")
    parser.add_argument("--persona-models", default="",
                        help="PERSONA=MODEL,… — each persona's embedded model: a packaged model's name "
                             "(qwen2.5-coder-1.5b, smollm2-135m, …) or a GGUF path, over the shipped lineup of "
                             "config/settings.toml; the tools suite writes with BRICK's")
    parser.add_argument("--seed", default=str(SEED),
                        help="tools: the run's sampler seed; each item draws from its own seed derived from it, the "
                             "same in every mode and run (\"none\": the model picks, as the product's forge does)")
    parser.add_argument("--out", default="", help="write every item's result as JSON lines to this file")
    parser.add_argument("--report", nargs="+", default=[], help="print the table from saved --out files instead")
    parser.add_argument("--budgets-from", nargs="+", default=[],
                        help="resample: per-item token budgets from the forge rows of saved --out files")
    parser.add_argument("--follow", action="store_true",
                        help="with --budgets-from: wait for each item's forge row (a forge run still going)")
    args = parser.parse_args()
    if args.report:
        saved: dict[str, list[ItemResult]] = {}
        for name in args.report:
            for line in Path(name).read_text().splitlines():
                row = json.loads(line)
                if args.ids and row["item_id"] not in set(args.ids.split(",")):
                    continue  # --ids restricts the report to items every mode ran
                row.pop("seed", None)  # which draw: kept in the file, not part of the result
                saved.setdefault(row.pop("mode"), []).append(ItemResult(**row))
        report(saved, {"items": len({r.item_id for rows in saved.values() for r in rows}), "from": args.report})
        return

    if args.suite == "tasks":
        run_tasks(args)
        return
    modes = [m.strip() for m in (args.modes or ",".join(TOOL_MODES)).split(",") if m.strip()]
    unknown = [m for m in modes if m not in TOOL_MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}: choose from {', '.join(TOOL_MODES)}")
    items = load_tools()
    if args.ids:
        items = items_by_ids(items, args.ids, "tools item")
    elif args.limit:
        items = items[: args.limit]
    settings_toml = tomllib.loads((REPO / "config" / "settings.toml").read_text())
    forge_conf = dict(settings_toml.get("forge", {}))
    if args.backend:
        forge_conf["backend"] = args.backend
    for pair in filter(None, (p.strip() for p in args.forge.split(","))):
        key, _, value = pair.partition("=")
        try:
            forge_conf[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            parser.error(f"--forge {pair!r}: the value must be a TOML value (true, 3, \"local\")")
    try:
        config = ForgeSettings.from_dict(forge_conf)
    except (TypeError, ValueError) as exc:
        parser.error(f"--forge: {exc}")
    embedded = {"threads": args.threads, "n_ctx": 4096, "persona_models": persona_models(args.persona_models)}
    models = ModelsConfig.from_dict({"backend": "embedded", "embedded": embedded})
    seed = run_seed(parser, args.seed)  # refused before the model loads
    model = LockWaits(ModelManager(models, var_dir=Path(args.var_dir)))
    if model.lock.busy():
        print(f"note: another process is using the model of {args.var_dir} now; the two take turns", flush=True)
    print(f"{len(items)} items, modes {', '.join(modes)}, model {model.resolve('BRICK')[1]}, "
          f"{args.threads} thread(s), sandbox {config.backend}, seed {seed}"
          + (f", [forge] overrides {args.forge}" if args.forge else ""), flush=True)

    out = open(args.out, "w", encoding="utf-8") if args.out else None
    results: dict[str, list[ItemResult]] = {}
    def read_budgets() -> dict[str, int]:
        found: dict[str, int] = {}
        for name in args.budgets_from:
            for line in Path(name).read_text().splitlines() if Path(name).exists() else []:
                row = json.loads(line)
                if row["mode"] == "forge":
                    found[row["item_id"]] = row["tokens"]
        return found

    budgets = read_budgets()
    for mode in sorted(modes, key=lambda m: TOOL_MODES.index(m) if m != "forge" else -1):
        started = time.perf_counter()

        def progress(result: ItemResult, mode: str = mode) -> None:
            mark = "pass" if result.passed else "FAIL"
            print(f"  {mode:8} {result.item_id:9} {mark}  {result.tokens:5} tok  {result.seconds:6.1f} s  "
                  f"{result.why[:90]}", flush=True)
            if out:
                out.write(json.dumps({"mode": mode, "seed": seed, **result.as_dict()}) + "\n")
                out.flush()

        if mode == "resample" and args.follow:
            results[mode] = []
            for item in items:  # each item once the forge (another process) has spent its tokens on it
                while item.id not in budgets:
                    time.sleep(10)
                    budgets = read_budgets()
                results[mode] += run_tool_items([item], mode, model, config, budgets=budgets, seed=seed,
                                                 on_result=progress)
        else:
            results[mode] = run_tool_items(items, mode, model, config, budgets=budgets, seed=seed,
                                           on_result=progress)
        if mode == "forge":
            budgets = {r.item_id: r.tokens for r in results[mode]}
        print(f"{mode}: {time.perf_counter() - started:.0f} s", flush=True)
    if out:
        out.close()
    figures = {"items": len(items), "threads": args.threads, "sandbox": config.backend, "seed": seed,
               "model_lock_wait_s": round(model.waited_s, 1)}
    report(results, figures)
    if warning := model.warning(args.var_dir):
        print(warning, flush=True)


class LockWaits:
    """The model, counting the time its calls waited for the model lock: another process using the model
    of the same var dir (a second bench, the product) makes the two take turns, and every item's seconds
    then count the other's calls too."""

    NOTICEABLE_S = 1.0

    def __init__(self, model: Any) -> None:
        self.model, self.waited_s = model, 0.0

    def chat(self, *args: Any, **kwargs: Any) -> Any:
        result = self.model.chat(*args, **kwargs)
        self.waited_s += float(getattr(result, "wait_ms", 0.0) or 0.0) / 1000
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def warning(self, var_dir: str) -> str:
        if self.waited_s < self.NOTICEABLE_S:
            return ""
        return (f"WARNING: the model calls waited {self.waited_s:.0f} s in all for another process using the "
                f"model of {var_dir}: the seconds above count that wait. For figures of time, give each bench "
                "process its own --var-dir (a directory whose models/ links to the assembled models).")


def run_seed(parser: argparse.ArgumentParser, value: str) -> int | None:
    """--seed: a whole number, or "none" for draws the model picks."""
    if value.strip().lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        parser.error(f"--seed {value!r}: give a whole number or none")


def items_by_ids(items: list, ids: str, what: str) -> list:
    """The items of the comma-separated `ids`, in their order; an id that names none is refused."""
    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    by_id = {item.id: item for item in items}
    unknown = [i for i in wanted if i not in by_id]
    if unknown:
        raise SystemExit(f"no such {what}: {', '.join(unknown)}")
    return [by_id[i] for i in wanted]


def run_tasks(args: argparse.Namespace) -> None:
    """The tasks suite: single (ALFRED's model asked once) and graph (a full run), item by item."""
    modes = [m.strip() for m in (args.modes or ",".join(TASK_MODES)).split(",") if m.strip()]
    unknown = [m for m in modes if m not in TASK_MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {', '.join(unknown)}: choose from {', '.join(TASK_MODES)}")
    scratch = Path(tempfile.mkdtemp(prefix="a4ps-bench-tasks-"))
    try:
        _run_tasks_in(scratch, modes, args)
    finally:
        if args.keep_scratch:
            print(f"scratch kept: {scratch}", flush=True)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def _run_tasks_in(scratch: Path, modes: list[str], args: argparse.Namespace) -> None:
    (scratch / "var").mkdir()
    (scratch / "var" / "models").symlink_to(Path(args.var_dir).resolve() / "models")
    shutil.copytree(REPO / "config", scratch / "config")
    settings_path = scratch / "config" / "settings.toml"
    text = settings_path.read_text().replace('backend = "auto"', 'backend = "embedded"', 1)
    text = re.sub(r"(?m)^threads = \d+", f"threads = {args.threads}", text)
    chosen = persona_models(args.persona_models)
    lines = "".join(f'{name} = "{model}"\n' for name, model in chosen.items())
    table = re.compile(r"(?ms)^\[models\.embedded\.persona_models\]\n.*?(?=^\[)")
    text = table.sub("", text)  # the shipped lineup, merged with --persona-models, is written back below
    text = text.replace("[graph]", f"[models.embedded.persona_models]\n{lines}\n[graph]", 1)
    settings_path.write_text(text)
    for name in ("DATABASE_URL", "REDIS_URL"):  # the runs go to the scratch var/'s own database and broker
        os.environ.pop(name, None)
    os.environ.update({"A4PS_VAR_DIR": str(scratch / "var"), "A4PS_CONFIG_DIR": str(scratch / "config"),
                       "A4PS_HUEY_IMMEDIATE": "true", "A4PS_CHANNEL_LAYER": "memory",
                       "DJANGO_SETTINGS_MODULE": "a4ps_site.settings"})
    import django

    django.setup()
    from django.core.management import call_command

    from forge.evals import services
    from forge.evals.engine import run_task_single
    from forge.evals.suites import load_tasks
    from personas.llm import model_manager
    from personas.persona_state import persona_sync_from_codex

    call_command("migrate", verbosity=0)
    persona_sync_from_codex()
    items = [i for i in load_tasks() if not i.setup_web]  # web tasks need a search engine serving their pages
    if args.category:
        items = [i for i in items if i.category == args.category]
    if args.ids:
        what = f"{args.category} task" if args.category else "task (a web task needs a search engine)"
        items = items_by_ids(items, args.ids, what)
    elif args.limit:
        items = items[: args.limit]
    model = model_manager()
    lineup = ", ".join(f"{p} {model.resolve(p)[1]}" for p in ("ALFRED", "BRICK", "ROBIN", "BABS"))
    print(f"{len(items)} tasks, modes {', '.join(modes)}, models {lineup}, "
          f"{model.config.embedded.effective_threads()} thread(s), scratch {scratch}", flush=True)
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    results: dict[str, list[ItemResult]] = {mode: [] for mode in modes}
    for item in items:
        for mode in modes:
            if mode == "single":
                result = run_task_single(item, model)
            else:
                result = services.run_task_graph(item, model=model, retrieval=mode == "graph")
            result.detail["needs"] = list(item.needs)
            results[mode].append(result)
            mark = "pass" if result.passed else "FAIL"
            extra = f" run #{result.detail.get('run')}" if result.detail.get("run") else ""
            print(f"  {mode:7} {item.id:9} {mark}  {result.tokens:5} tok  {result.seconds:6.1f} s{extra}  "
                  f"{result.why[:80]}", flush=True)
            if out:
                out.write(json.dumps({"mode": mode, **result.as_dict()}) + "\n")
                out.flush()
    if out:
        out.close()
    model.close()
    report(results, {"items": len(items), "suite": "tasks", "threads": model.config.embedded.effective_threads()})


def report(results: dict[str, list[ItemResult]], figures: dict[str, object]) -> None:
    """The table per category and mode, the costs and the ratios, then the RESULT line."""
    order = [*TOOL_MODES, *TASK_MODES]
    results = {m: results[m] for m in sorted(results, key=lambda m: order.index(m) if m in order else 9)}
    summaries = {mode: summarise(rows) for mode, rows in results.items()}
    categories = sorted({r.category for rows in results.values() for r in rows})
    header = f"{'category':14}" + "".join(f"{m:>12}" for m in results)
    print("\npass rate (hidden tests / answer checks)\n" + header)
    for category in [*categories, "overall"]:
        row = f"{category:14}"
        for mode in results:
            block = summaries[mode]["overall" if category == "overall" else "categories"]
            block = block if category == "overall" else block.get(category, {})
            row += f"{block.get('pass_rate', 0) * 100:11.0f}%"
        print(row)
    print("\nper item" + "".join(f"{m:>12}" for m in results))
    for mode, rows in results.items():
        tokens = [r.tokens for r in rows]
        seconds = [r.seconds for r in rows]
        figures[f"{mode}_pass_rate"] = summaries[mode]["overall"]["pass_rate"]
        figures[f"{mode}_tokens_mean"] = round(statistics.mean(tokens), 1) if tokens else 0
        figures[f"{mode}_seconds_median"] = round(statistics.median(seconds), 1) if seconds else 0
        figures[f"{mode}_categories"] = {c: b["pass_rate"] for c, b in summaries[mode]["categories"].items()}
        figures[f"{mode}_styles"] = {s: b["pass_rate"] for s, b in summaries[mode]["styles"].items()}
    for label, key in (("mean tokens", "tokens_mean"), ("median seconds", "seconds_median")):
        print(f"{label:14}" + "".join(f"{figures[f'{m}_{key}']:>12}" for m in results))
    if "single" in results and "forge" in results:
        solved = {r.item_id for r in results["single"] if r.passed}
        forge_s = [r.seconds for r in results["forge"] if r.item_id in solved]
        single_s = [r.seconds for r in results["single"] if r.item_id in solved]
        if solved:
            ratio = statistics.median(forge_s) / max(statistics.median(single_s), 1e-9)
            figures["forge_vs_single_time_on_single_solved"] = round(ratio, 2)
            print(f"forge / single median time on the items single solves: {ratio:.2f}x")
        figures["forge_minus_single_points"] = round(
            100 * (figures["forge_pass_rate"] - figures["single_pass_rate"]), 1)  # type: ignore[operator]
        figures["forge_only"] = sorted({r.item_id for r in results["forge"] if r.passed} - solved)
        figures["single_only"] = sorted(solved - {r.item_id for r in results["forge"] if r.passed})
    if "single" in results and "graph" in results:
        figures["graph_minus_single_points"] = round(
            100 * (figures["graph_pass_rate"] - figures["single_pass_rate"]), 1)  # type: ignore[operator]
        for mode in ("single", "graph"):
            helped = [r for r in results[mode] if r.detail.get("needs")]
            figures[f"{mode}_pass_rate_where_tool_or_memory_helps"] = (
                round(sum(r.passed for r in helped) / len(helped), 4) if helped else None)
        figures["graph_only"] = sorted({r.item_id for r in results["graph"] if r.passed} -
                                       {r.item_id for r in results["single"] if r.passed})
        figures["single_only"] = sorted({r.item_id for r in results["single"] if r.passed} -
                                        {r.item_id for r in results["graph"] if r.passed})
        figures["graph_fallback_answers"] = sum(bool(r.detail.get("fallback")) for r in results["graph"])
        figures["graph_budget_cut"] = sum(bool(r.detail.get("budget_out")) for r in results["graph"])
        print(f"where a tool or memory helps: single {figures['single_pass_rate_where_tool_or_memory_helps']}, "
              f"graph {figures['graph_pass_rate_where_tool_or_memory_helps']}")
    if "graph" in results and "closedbook" in results:
        figures["graph_minus_closedbook_points"] = round(
            100 * (figures["graph_pass_rate"] - figures["closedbook_pass_rate"]), 1)  # type: ignore[operator]
        print(f"graph with retrieval - the same graph with retrieval off: "
              f"{figures['graph_minus_closedbook_points']} points")
    if "forge" in results:
        attempts = [a for r in results["forge"] for a in r.detail.get("attempts", [])]
        figures["forge_truncated_retries"] = sum(a.get("truncated_retries", 0) for a in attempts)
    print("RESULT " + json.dumps(figures))


if __name__ == "__main__":
    main()
