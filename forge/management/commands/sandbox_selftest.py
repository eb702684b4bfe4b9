"""`manage.py sandbox_selftest [--backend NAME ...] [--quick] [--json]`: the sandbox's attack suite against
each backend, printed as a matrix with the evidence per cell (the Forge page's self-test runs the same)."""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from forge import sandbox
from forge.selftest import ATTACKS, Cell, run_selftest


class Command(BaseCommand):
    help = "Run the sandbox self-test: attacks generated code could try, against each sandbox backend."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", action="append", choices=sandbox.ORDER,
                            help="a backend to test (repeatable; default: every one)")
        parser.add_argument("--quick", action="store_true", help="only the quick pass of escapes")
        parser.add_argument("--json", action="store_true", help="print the matrix as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        quiet = options["json"]
        total = sum(1 for a in ATTACKS if a.quick or not options["quick"])

        def progress(backend: str, cell: Cell) -> None:
            mark = "contained" if cell.contained else ("ESCAPED" if cell.kind == "escape" else "not held")
            self.stdout.write(f"  {backend:13} {cell.key:16} {mark:10} {cell.evidence[:90]}")

        if not quiet:
            self.stdout.write(f"{total} attacks per backend")
        reports = run_selftest(options["backend"], quick=options["quick"], on_cell=None if quiet else progress)
        if quiet:
            self.stdout.write(json.dumps([r.as_dict() for r in reports], indent=2))
        else:
            for report in reports:
                if not report.available:
                    self.stdout.write(f"{report.backend}: not available ({report.reason})")
                else:
                    held = len(report.cells) - len(report.escapes) - len(report.weak_limits)
                    self.stdout.write(f"{report.backend}: {held} of {len(report.cells)} contained, "
                                      f"{len(report.escapes)} escape(s), {len(report.weak_limits)} limit(s) not held")
        escaped = [f"{r.backend}: {c.key}" for r in reports for c in r.escapes]
        if escaped:
            raise CommandError("escapes got through: " + ", ".join(escaped))
