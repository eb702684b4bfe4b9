"""The memory app: LanceDB hierarchical memory (`store`, `reads`, `services`), the curator and golden
datasets (`curator`, `datasets/`), fine-tune jobs (`finetunes/`) and the living image (`image`).

It imports only `a4ps_site` and the personas kernel, never `forge`. In ready() it plugs into the
kernel's ports what the graph and the model manager need of it (memory search and writes, promoted
adapters), queues fine-tune jobs when the kernel's events say one was created, and gives the
supervisor its living-image steps (restore once the broker is up, save on shutdown).
"""
from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "memory"
    verbose_name = "Memory"

    def ready(self) -> None:
        # Imported here, not at the top: models cannot be imported before the app registry is ready.
        from a4ps_site import lifecycle
        from memory import image, services, tasks
        from memory.documents.library import document_library
        from memory.documents.tasks import document_ingest_run
        from memory.finetunes.selectors import finetunes_awaiting_decision
        from memory.finetunes.services import persona_model_override
        from memory.finetunes.tasks import finetune_compare_run, finetune_run
        from memory.research.services import senses, web_research
        from personas import events, ports

        def memory_write(*, run_id: int, state: dict) -> dict | None:
            stored = services.memory_write_run(run_id=run_id, state=state)
            if stored is not None:
                tasks.ensure_memory_indexes()  # the tables may have grown past an index threshold
            return stored

        ports.provide(
            memory_search=lambda query, k: services.memory_search(query=query, k=k),
            memory_write=memory_write,
            web_research=lambda *, query, run_id: web_research(query=query, run_id=run_id),
            senses=senses,
            document_library=document_library,
            model_override=persona_model_override,
            waiting_for_a_person=finetunes_awaiting_decision,
        )
        events.subscribe(["finetune.queued"], "finetune worker",
                         lambda event: finetune_run(int(event.payload["job"])))
        events.subscribe(["document.queued"], "document indexer",
                         lambda event: document_ingest_run(int(event.payload["document"])))
        events.subscribe(["finetune.compare_queued"], "compare-in-chat worker",
                         lambda event: finetune_compare_run(int(event.payload["comparison"])))

        def restore_image() -> str | None:
            restored = image.image_restore_on_start()
            lines = [f"warning: {w}" for w in restored["warnings"]]
            if restored["image"]:
                lines.append(f"live state restored from {restored['image']}")
            return "\n".join(lines) or None

        def save_image() -> str:
            return f"living image saved: {image.image_save(reason='shutdown').name}"

        lifecycle.register("broker_up", "restore the living image", restore_image)

        def resume_documents() -> str | None:
            from memory.documents.services import documents_resume

            n = documents_resume()
            return f"{n} document(s) left half-indexed queued again" if n else None

        lifecycle.register("broker_up", "queue documents a stop left half-indexed", resume_documents)
        lifecycle.register("stopping", "save the living image", save_image)
