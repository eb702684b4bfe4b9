"""The forge app: sandbox backends (`sandbox`), the Tool Forge loop (`toolforge`), the live tool
registry (`registry`), forge requests, tools and their calls.

It imports only `a4ps_site` and the personas kernel, never `memory`. In ready() it plugs into the
kernel's ports what the graph needs of it (forge a tool mid-run, the live tool schemas, tool calls in
the sandbox) and has the worker take forge requests queued from the Forge page.
"""
import contextlib
import sys
import threading

from django.apps import AppConfig


class ForgeConfig(AppConfig):
    name = "forge"
    verbose_name = "Forge"

    def ready(self) -> None:
        # Imported here, not at the top: models cannot be imported before the app registry is ready.
        from a4ps_site.config import register_settings_section
        from forge import registry, services, tasks
        from forge.config import ForgeSettings
        from forge.evals import services as eval_services
        from forge.evals.tasks import eval_run
        from personas import events, ports

        # A bad [forge] edit is rejected with a banner and the last good value stays (never a 500).
        register_settings_section("forge", ForgeSettings.from_dict)
        ports.provide(
            forge=services.forge_for_graph,
            tool_schemas=lambda: registry.registry().schemas(),
            call_tool=services.tool_call_for_graph,
            task_accuracy=eval_services.task_accuracy,
        )

        def take_queued_request(event: events.Event) -> None:
            if not event.payload.get("inline"):  # a request forged inside a run is run by that run
                tasks.forge_request_run(int(event.payload["forge_request"]))

        events.subscribe(["forge.queued"], "forge worker", take_queued_request)

        def take_queued_eval(event: events.Event) -> None:
            if not event.payload.get("inline"):  # `manage.py evals run` executes its own run
                eval_run(int(event.payload["eval_run"]))

        events.subscribe(["evals.queued"], "eval worker", take_queued_eval)

        if "daphne" in (sys.argv[0] if sys.argv else ""):
            # The web process checks its sandbox (probes and the quick self-test take seconds) in the
            # background at start, so the first Forge page does not wait for it.
            def check_sandbox() -> None:
                from forge import sandbox
                from forge.config import forge_settings

                with contextlib.suppress(Exception):
                    sandbox.select_backend(forge_settings().backend)
                    sandbox.available_backends()

            threading.Thread(target=check_sandbox, name="a4ps-sandbox-check", daemon=True).start()
