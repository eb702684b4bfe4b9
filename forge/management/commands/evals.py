"""`manage.py evals run|list|show|compare`: the eval runner from the command line (the Evals page and
its Huey job run the same service)."""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from forge.evals import selectors, services
from forge.evals.engine import ItemResult
from forge.evals.models import EvalRun
from personas.llm import PRODUCT_NOT_RUNNING, model_reachable


def run_json(run: EvalRun, *, results: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": run.pk, "suite": run.suite, "mode": run.mode, "status": run.status, "items": run.total,
        "done": run.done, "passed": run.passed, "pass_rate": round(run.pass_rate, 4), "tokens": run.tokens,
        "seconds": round(run.seconds, 1), "model": run.model, "backend": run.backend, "sandbox": run.sandbox,
        "settings_digest": run.settings_digest, "commit": run.commit, "error": run.error,
        "categories": {row["name"]: row["pct"] / 100 for row in selectors.category_table(run=run)
                       if row["kind"] == "category"},
    }
    if results:
        data["results"] = [{"item": r.item_id, "category": r.category, "style": r.style, "passed": r.passed,
                            "attempts": r.attempts, "tokens": r.tokens, "seconds": r.seconds, "why": r.why,
                            "output": r.output} for r in selectors.run_results(run=run)]
    return data


class Command(BaseCommand):
    help = "Run the eval suites (tools, tasks) in a mode and compare eval runs."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run", help="run a suite in one mode here and now, printing each item")
        run.add_argument("--suite", required=True, choices=sorted(services.SUITES))
        run.add_argument("--mode", required=True, help="tools: single, forge, resample; tasks: single")
        run.add_argument("--limit", type=int, default=0, help="the first N items only (0 = all)")
        run.add_argument("--json", action="store_true", help="print the run and its results as JSON")
        sub.add_parser("list", help="the eval runs, newest first")
        show = sub.add_parser("show", help="one eval run with its results")
        show.add_argument("id", type=int)
        show.add_argument("--json", action="store_true")
        compare = sub.add_parser("compare", help="which items flipped between two eval runs")
        compare.add_argument("before", type=int)
        compare.add_argument("after", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "run":
            self.run(options)
        elif action == "list":
            for run in selectors.runs_page()[:50]:
                self.stdout.write(f"#{run.pk:<4} {run.created:%Y-%m-%d %H:%M}  {run.suite:5} {run.mode:8} "
                                  f"{run.status:10} {run.passed}/{run.done} of {run.total}  {run.model}")
        elif action == "show":
            run = self.get(options["id"])
            if options["json"]:
                self.stdout.write(json.dumps(run_json(run, results=True), indent=2))
            else:
                self.summary(run)
                for r in selectors.run_results(run=run):
                    self.stdout.write(f"  {r.item_id:9} {'pass' if r.passed else 'FAIL'}  {r.why[:100]}")
        else:
            a, b = self.get(options["before"]), self.get(options["after"])
            diff = selectors.compare(a=a, b=b)
            self.stdout.write(f"#{a.pk} {a.suite}/{a.mode} {a.pass_pct}%  →  #{b.pk} {b.suite}/{b.mode} {b.pass_pct}%"
                              f"  ({diff['counts'].get('fixed', 0)} fixed, {diff['counts'].get('broken', 0)} broken, "
                              f"{diff['same']} unchanged)")
            for flip in diff["flips"]:
                self.stdout.write(f"  {flip.item_id:9} {flip.change}")

    def get(self, pk: int) -> EvalRun:
        run = EvalRun.objects.filter(pk=pk).first()
        if run is None:
            raise CommandError(f"No eval run #{pk}.")
        return run

    def summary(self, run: EvalRun) -> None:
        self.stdout.write(f"eval #{run.pk}: {run.suite}/{run.mode} {run.status}, passed {run.passed} of {run.done} "
                          f"({run.pass_pct}%), {run.tokens} tokens, {run.seconds:.0f} s; model {run.model}, "
                          f"sandbox {run.sandbox}, settings {run.settings_digest}, commit {run.commit}")
        for row in selectors.category_table(run=run):
            self.stdout.write(f"  {row['kind']:8} {row['name']:14} {row['passed']}/{row['items']}  {row['pct']}%")

    def run(self, options: dict[str, Any]) -> None:
        if not model_reachable():
            # Every model call would fail on the lock and the run would record each item as crashed.
            raise CommandError(f"{PRODUCT_NOT_RUNNING} No eval run was recorded.")
        try:
            run = services.eval_run_create(suite=options["suite"], mode=options["mode"], limit=options["limit"],
                                           enqueue=False)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        quiet = options["json"]

        def progress(result: ItemResult) -> None:
            if not quiet:
                self.stdout.write(f"  {result.item_id:9} {'pass' if result.passed else 'FAIL'}  {result.tokens:5} tok  "
                                  f"{result.seconds:6.1f} s  {result.why[:90]}")

        if not quiet:
            self.stdout.write(f"eval #{run.pk}: {run.suite}/{run.mode}, {run.total} item(s)")
        done = services.eval_run_execute(run_id=run.pk, on_result=progress)
        if done is None:
            raise CommandError(f"Eval #{run.pk} was taken by another worker.")
        if quiet:
            self.stdout.write(json.dumps(run_json(done, results=True), indent=2))
        else:
            self.summary(done)
        if done.status == EvalRun.Status.FAILED:
            raise CommandError(f"Eval #{done.pk} failed: {done.error}")
