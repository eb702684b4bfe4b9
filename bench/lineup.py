"""Each packaged embedded model in each persona's role, on a few open dialogue prompts: how often its
contribution is real (not hollow), how many distinct candidate lines BRICK gets, and how fast.

    python bench/lineup.py [--models qwen2.5-coder-0.5b,qwen2.5-coder-1.5b,smollm2-135m] [--threads 1]
                           [--prompts N] [--out F]

Each role is asked with the graph's own prompt builders (the small prompt style the embedded models
get), the codex's system prompts and the graph's token limits, on the embedded llama.cpp backend; a
reply is judged by the graph's own quality checks (personas/graph/quality.py): hollow_reason for
thesis, antithesis, research and answer, distinct_lines for the candidates. The context each role
sees (BRICK's thesis for ROBIN, the dialogue for ALFRED) is fixed text written here, so every model
answers the same question. Accuracy on checkable answers is bench/evals.py --suite tasks; this
measures the open-ended contributions those answers come from. Prints a table, then `RESULT {json}`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from personas.graph import prompts, quality  # noqa: E402
from personas.graph.state import GraphSettings  # noqa: E402
from personas.inference import ModelManager, ModelOutputInvalid, ModelsConfig  # noqa: E402
from personas.inference.packaged import PACKAGED_MODELS  # noqa: E402

# Open tasks, as a person writes them on the dashboard; each with a thesis and a dialogue written here.
DIALOGUES: list[dict[str, Any]] = [
    {
        "task": ("Design the onboarding protocol for the Community Resource Atlas: new volunteers must be "
                 "productive within a week, and the process must be exceptionally gentle with people who "
                 "are nervous about technology."),
        "thesis": ("Pair each volunteer with a mentor for the first week; day one covers only logging in and "
                   "finding one resource, days two to four add one task each, and day five is a review."),
        "memory": "Run 12: volunteers who had a named mentor stayed twice as long as those who did not.",
    },
    {
        "task": "Plan five weekday dinners for a family of four on a budget of 60 euros, with one vegetarian child.",
        "thesis": ("Cook a big pot of lentil stew on Monday and reuse it on Tuesday; pasta with tomato sauce on "
                   "Wednesday; vegetable omelettes on Thursday; a bean chili on Friday. All meatless, about 48 euros."),
        "memory": "Run 7: the family said the children refuse spicy food.",
    },
    {
        "task": "Should a small public library move its catalogue to a cloud service? Weigh it for the board.",
        "thesis": ("Yes: a cloud catalogue removes the cost of the ageing server, gives patrons search from home, "
                   "and the vendor handles backups; the risk is a yearly fee and dependence on the vendor."),
        "memory": "Run 3: the library's server is nine years old and failed twice last winter.",
    },
    {
        "task": "Explain to a ten-year-old why we have seasons.",
        "thesis": ("Earth is tilted. For half the year your half of Earth leans toward the Sun, so sunlight hits "
                   "it more directly and days are longer: summer. The other half of the year it leans away: winter."),
        "memory": "Run 21: a child asked whether summer happens because Earth is closer to the Sun.",
    },
]


def codex_personas() -> dict[str, dict[str, Any]]:
    codex = tomllib.loads((REPO / "config" / "codex.toml").read_text())
    return {name: {"system_prompt": spec["system_prompt"], "principles": spec.get("principles", [])}
            for name, spec in codex.get("personas", codex).items() if isinstance(spec, dict)}


def ask_role(role: str, dialogue: dict[str, Any], personas: dict[str, Any], model: ModelManager,
             settings: GraphSettings) -> dict[str, Any]:
    """One contribution of `role` on one dialogue: the reply, whether it is real, tokens and seconds."""
    task = dialogue["task"]
    state: dict[str, Any] = {"task": task, "thesis": dialogue["thesis"], "candidates": [], "memories": []}
    json_schema = None
    max_tokens = settings.max_tokens
    if role == "BRICK candidates":
        persona, messages = "BRICK", prompts.candidates(personas.get("BRICK"), state, settings.thoughts)
        json_schema, max_tokens = prompts.thoughts_schema(settings.thoughts), settings.json_max_tokens
    elif role == "BRICK thesis":
        persona, messages = "BRICK", prompts.thesis(personas.get("BRICK"), {**state, "thesis": ""})
    elif role == "ROBIN antithesis":
        persona, messages = "ROBIN", prompts.respond(personas.get("ROBIN"), state)
    elif role == "BABS research":
        memories = [{"run_id": 1, "text": dialogue["memory"]}]
        persona, messages = "BABS", prompts.research(personas.get("BABS"), task, memories)
    else:  # ALFRED answer
        dialogue_state = {**state, "dialogue": [
            {"persona": "BRICK", "content": dialogue["thesis"]},
            {"persona": "ROBIN", "content": "Mostly right; say how this would feel to the people it is for."}]}
        persona, messages = "ALFRED", prompts.synthesis(personas.get("ALFRED"), dialogue_state)
    started = time.perf_counter()
    try:
        reply = model.chat(persona, messages, json_schema=json_schema, max_tokens=max_tokens, temperature=0.0)
    except ModelOutputInvalid as exc:  # cut off or unreadable JSON: the graph would have asked again
        return {"role": role, "task": task[:40], "seconds": round(time.perf_counter() - started, 1),
                "tokens": int(getattr(exc, "completion_tokens", 0) or 0), "real": False, "distinct": 0,
                "why": "cut off or unreadable JSON", "reply": str(getattr(exc, "content", ""))[:300]}
    seconds = time.perf_counter() - started
    prompt_text = "\n".join(m["content"] for m in messages)  # the system prompt too: echoing it is hollow
    row: dict[str, Any] = {"role": role, "task": task[:40], "seconds": round(seconds, 1),
                           "tokens": int(reply.completion_tokens or 0)}
    if json_schema:
        raw = reply.parsed.get("thoughts", []) if isinstance(reply.parsed, dict) else []
        kept, _ = quality.distinct_lines([str(t) for t in raw], task=task,
                                         instructions=prompt_text.replace(task, " "), embed=model.embed)
        row.update(real=len(kept) >= 2, distinct=len(kept), reply=json.dumps(raw)[:300])
    else:
        if role == "BABS research":  # stating a retrieved fact back is a report, as in the graph (nodes.py)
            prompt_text = prompt_text.replace(dialogue["memory"], " ")
        why = quality.hollow_reason(reply.content or "", prompt=prompt_text, task=task)
        row.update(real=not why, why=why, reply=(reply.content or "")[:300])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(PACKAGED_MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=len(DIALOGUES), help="the first N dialogue prompts")
    parser.add_argument("--var-dir", default=str(REPO / "var"), help="where the assembled GGUFs live")
    parser.add_argument("--out", default="", help="write every contribution as JSON lines to this file")
    parser.add_argument("--roles", default="", help="comma-separated roles only (default: all five)")
    parser.add_argument("--report", nargs="+", default=[], help="print the table from saved --out files instead")
    args = parser.parse_args()
    roles = ["BABS research", "BRICK candidates", "BRICK thesis", "ROBIN antithesis", "ALFRED answer"]
    if args.report:
        saved = [json.loads(line) for name in args.report for line in Path(name).read_text().splitlines()]
        report(saved, list(dict.fromkeys(r["model"] for r in saved)), roles, {"from": args.report})
        return
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PACKAGED_MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(PACKAGED_MODELS)}")
    if args.roles:
        roles = [r for r in roles if r in {x.strip() for x in args.roles.split(",")}]
    settings = GraphSettings.from_dict(tomllib.loads((REPO / "config" / "settings.toml").read_text()).get("graph"))
    personas = codex_personas()
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    rows: list[dict[str, Any]] = []
    for key in keys:
        config = ModelsConfig.from_dict({"backend": "embedded", "embedded": {
            "threads": args.threads, "n_ctx": 4096,
            "persona_models": {p: key for p in ("ALFRED", "BRICK", "ROBIN", "BABS")}}})
        model = ModelManager(config, var_dir=Path(args.var_dir))
        try:
            for dialogue in DIALOGUES[: args.prompts]:
                for role in roles:
                    row = {"model": key, **ask_role(role, dialogue, personas, model, settings)}
                    rows.append(row)
                    print(f"  {key:20} {role:17} {'real' if row['real'] else 'HOLLOW':6} {row['tokens']:4} tok "
                          f"{row['seconds']:6.1f} s  {row.get('why') or row['reply'][:70]!r}", flush=True)
                    if out:
                        out.write(json.dumps(row) + "\n")
                        out.flush()
        finally:
            model.close()
    if out:
        out.close()
    report(rows, keys, roles, {"threads": args.threads, "prompts": min(args.prompts, len(DIALOGUES))})


def report(rows: list[dict[str, Any]], keys: list[str], roles: list[str], figures: dict[str, Any]) -> None:
    print(f"\n{'model':20}" + "".join(f"{r:>19}" for r in roles) + f"{'tok/s':>8}")
    for key in keys:
        line = f"{key:20}"
        mine = [r for r in rows if r["model"] == key]
        for role in roles:
            cells = [r for r in mine if r["role"] == role]
            real = sum(r["real"] for r in cells)
            median_s = statistics.median(r["seconds"] for r in cells)
            extra = (f" d{statistics.mean(r['distinct'] for r in cells):.1f}" if role == "BRICK candidates" else "")
            line += f"{real}/{len(cells)} {median_s:5.1f}s{extra}".rjust(19)
            figures[f"{key}|{role}"] = {"real": real, "of": len(cells), "median_s": median_s}
        rate = sum(r["tokens"] for r in mine) / max(sum(r["seconds"] for r in mine), 1e-9)
        figures[f"{key}|tokens_per_s"] = round(rate, 1)
        print(line + f"{rate:8.1f}")
    print("cells: real contributions / asked, median seconds (candidates: d = mean distinct lines)")
    print("RESULT " + json.dumps(figures))


if __name__ == "__main__":
    main()
