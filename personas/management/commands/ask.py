"""`manage.py ask "<task>" [--wait] [--json]`: submit a task the way the dashboard does and, with --wait,
print the final answer (with --json: the run and its steps, as the JSON API returns them)."""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from huey.contrib.djhuey import HUEY

from a4ps_site.cluster import worker_id
from personas import runs
from personas.api import run_json
from personas.llm import PRODUCT_NOT_RUNNING, model_reachable
from personas.models import Run
from personas.runner import lease_seconds

TAKE_OVER_AFTER_S = 10  # no worker took the run by then: it runs in this process


def broker_reachable() -> bool:
    try:
        HUEY.storage.conn.ping()
    except Exception:  # down, or a URL that does not answer
        return False
    return True


class Command(BaseCommand):
    help = "Submit a task to the personas (the dashboard's path) and optionally wait for the final answer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task", help="what the personas should work on")
        parser.add_argument("--wait", action="store_true",
                            help="wait for the final answer (runs here if no worker takes the task)")
        parser.add_argument("--json", action="store_true", help="print the finished run and its steps as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        wait = options["wait"] or options["json"]
        if wait and not model_reachable():
            # Run here, every model call would fail on the broker's lock and the run would end failed.
            raise CommandError(f"{PRODUCT_NOT_RUNNING} Without --wait or --json the task is queued for when it is "
                               "up. No run was recorded.")
        reachable = broker_reachable()
        events_log = logging.getLogger("personas.events")
        level = events_log.level
        if not reachable:
            events_log.setLevel(logging.CRITICAL)  # the worker cannot be woken: said below, not as a traceback
        try:
            run = runs.run_submit(task=options["task"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        finally:
            events_log.setLevel(level)
        if not options["json"]:
            self.stdout.write(f"Run #{run.pk} queued.")
        if not wait:
            if not reachable:
                self.stdout.write("The product is not running: the run will start once `python3 a4ps.py run` is "
                                  "up.")
            return
        self.quiet = options["json"]
        run = self.wait_for(run, take_over=not reachable)
        if options["json"]:
            self.stdout.write(json.dumps(run_json(run, steps=True), indent=2, default=str))
        elif run.status == Run.Status.DONE:
            self.stdout.write(run.final_answer)
        if run.status != Run.Status.DONE:
            raise CommandError(f"Run #{run.pk} ended {run.status}" + (f": {run.error}" if run.error else "."))

    def wait_for(self, run: Run, *, take_over: bool) -> Run:
        """Follow the run to its end, printing each step; run it here when no worker takes it."""
        shown = 0
        queued_since = time.monotonic()
        while True:
            run.refresh_from_db()
            shown = self.print_steps(run, shown)
            if run.status in (Run.Status.DONE, Run.Status.FAILED, Run.Status.CANCELLED, Run.Status.WAITING):
                return run
            if run.status == Run.Status.QUEUED and (take_over or time.monotonic() - queued_since > TAKE_OVER_AFTER_S):
                self.stderr.write("No worker took the run: running it in this process.")
                while True:  # in queue order, as the dispatcher would
                    claimed = runs.run_claim_next(worker=worker_id(), lease_s=lease_seconds())
                    if claimed is None:
                        break
                    runs.run_execute(run=claimed)
                    if claimed.pk == run.pk:
                        break
                take_over = False
                queued_since = time.monotonic()
                continue
            time.sleep(1)

    def print_steps(self, run: Run, shown: int) -> int:
        """Each new step as one line on stderr (stdout keeps only the answer or the JSON)."""
        if self.quiet:
            return run.steps.order_by("-seq").values_list("seq", flat=True).first() or shown
        for step in run.steps.filter(seq__gt=shown).order_by("seq"):
            first_line = (step.content.splitlines() or [""])[0]
            self.stderr.write(f"  {step.persona:6} {step.kind:12} {first_line[:100]}")
            shown = step.seq
        return shown
