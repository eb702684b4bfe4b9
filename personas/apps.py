"""The personas app — the kernel: personas and their codex, events, model access (`inference/`, `llm`),
the cognitive graph (`graph/`) and its run executor, runs, the motivator and the dashboard.

The kernel imports only `a4ps_site` and never `forge` or `memory`: what it needs of them (memory
search and writes, the forge, live tools, promoted adapters) comes through `personas.ports`, which
those apps fill in from their own ready(). Its own reactions to events (wake the dispatcher, resume
runs after an amendment decision, let the motivator set goals) are subscribed here.
"""
from django.apps import AppConfig


class PersonasConfig(AppConfig):
    name = "personas"
    verbose_name = "Personas"

    def ready(self) -> None:
        # Imported here, not at the top: models cannot be imported before the app registry is ready.
        from django.conf import settings

        from a4ps_site import lifecycle
        from personas import events, tasks
        from personas.llm import model_manager
        from personas.motivator import TRIGGERS

        events.subscribe(["run.queued"], "dispatcher", tasks.on_run_queued)
        events.subscribe(["codex.amendment_approved", "codex.amendment_rejected"], "dispatcher",
                         tasks.on_amendment_decided)
        events.subscribe(TRIGGERS, "motivator", tasks.on_motivating_event)

        def announce_start() -> None:
            tasks.publish_event("system.started", "launcher",
                                {"message": f"A4PS is up at http://{settings.BIND_HOST}:{settings.BIND_PORT}"})

        def say_model_backend() -> str:
            # The supervisor's process decides as the workers do: Ollama if it answers, else embedded.
            backend, why = model_manager().backend_choice()
            return f"model backend: {backend} ({why})"

        def record_restart(*, name: str, code: int) -> None:
            tasks.publish_event("system.restarted", "launcher", {
                "process": name, "code": code,
                "message": f"The {name} process stopped (code {code}) and was restarted"})

        lifecycle.register("restarted", "record the restart in the system log", record_restart)
        lifecycle.register("serving", "announce the start", announce_start)
        lifecycle.register("serving", "say which model backend answers", say_model_backend)
