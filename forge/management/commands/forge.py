"""`manage.py forge "<spec>" [--json]`: forge a tool here and now, printing each attempt (the Forge page,
the API and the graph use the same service)."""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from forge import services
from forge.api import request_json
from forge.models import ForgeRequest
from personas.llm import PRODUCT_NOT_RUNNING, model_reachable


class Command(BaseCommand):
    help = "Forge a tool from a spec: BRICK writes it, the sandbox judges it, the registry loads it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("spec", help='what the tool does, e.g. "a function add(a, b) that returns a + b"')
        parser.add_argument("--json", action="store_true", help="print the request, its attempts and the tool as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if not model_reachable():
            # BRICK could write nothing: the request would be recorded as failed at its first attempt.
            raise CommandError(f"{PRODUCT_NOT_RUNNING} No forge request was recorded.")
        try:
            request = services.forge_request_create(spec=options["spec"], enqueue=False)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        quiet = options["json"]
        if not quiet:
            self.stdout.write(f"forge request #{request.pk}: {request.spec[:100]}")
        request = services.forge_request_execute(request=request, on_attempt=None if quiet else self.attempt)
        if quiet:
            self.stdout.write(json.dumps(request_json(request, attempts=True), indent=2))
        elif request.status == ForgeRequest.Status.SUCCEEDED and request.tool_version:
            version = request.tool_version
            self.stdout.write(f"registered {version.tool.name} v{version.number}:\n{version.code}")
        if request.status != ForgeRequest.Status.SUCCEEDED:
            raise CommandError(f"The forge could not build this tool: {request.error}")

    def attempt(self, report: Any) -> None:
        verdict = "passed its checks" if report.passed else (report.error or "failed")
        self.stdout.write(f"  attempt {report.number}: {verdict} ({report.tokens} tokens)")
