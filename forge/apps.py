"""The forge app: sandbox backends (`sandbox`), the Tool Forge loop (`toolforge`), the live tool
registry (`registry`), forge requests, tools and their calls.

It imports only `a4ps_site` and the personas kernel, never `memory`. In ready() it plugs into the
kernel's ports what the graph needs of it (forge a tool mid-run, the live tool schemas, tool calls in
the sandbox) and has the worker take forge requests queued from the Forge page.
"""
from django.apps import AppConfig


class ForgeConfig(AppConfig):
    name = "forge"
    verbose_name = "Forge"

    def ready(self) -> None:
        # Imported here, not at the top: models cannot be imported before the app registry is ready.
        from forge import registry, services, tasks
        from personas import events, ports

        ports.provide(
            forge=services.forge_for_graph,
            tool_schemas=lambda: registry.registry().schemas(),
            call_tool=services.tool_call_for_graph,
        )

        def take_queued_request(event: events.Event) -> None:
            if not event.payload.get("inline"):  # a request forged inside a run is run by that run
                tasks.forge_request_run(int(event.payload["forge_request"]))

        events.subscribe(["forge.queued"], "forge worker", take_queued_request)
