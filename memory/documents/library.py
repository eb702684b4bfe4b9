"""A library outside the person's memory: documents given as (name, text), parsed, split and embedded as an
upload would be, in a private store, searched as BABS searches memory. The evals runner uses it for tasks
that ship their documents (the eval then measures retrieval without touching the real memory)."""
from __future__ import annotations

import hashlib
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

from memory.documents import parsing
from memory.documents.services import document_settings, memory_entry
from memory.store import MemoryStore

_lock = threading.Lock()
_libraries: dict[str, tuple[Any, Callable[[str, int], list[dict[str, Any]]]]] = {}


def memory_entries(documents: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """What add_memories takes for each document, as an upload would store it."""
    config = document_settings()
    entries = []
    for name, text in documents:
        parsed = parsing.parse(name, text.encode("utf-8"), max_pages=config["max_pages"])
        _, chunks = parsing.split(parsed, chunk_chars=config["chunk_chars"], overlap_chars=config["overlap_chars"])
        entries.append(memory_entry(parsed, chunks, name=name, document_id=None))
    return entries


def document_library(documents: Sequence[tuple[str, str]]) -> Callable[[str, int], list[dict[str, Any]]]:
    """A search over these documents alone (built once per process for the same documents)."""
    from memory.services import search_store
    from personas.llm import model_manager

    manager = model_manager()
    digest = hashlib.sha256(repr((getattr(manager, "embedding_model", ""), sorted(documents))).encode()).hexdigest()
    with _lock:
        if digest not in _libraries:
            folder = tempfile.TemporaryDirectory(prefix="a4ps-library-")
            vectors = manager.embed(["dimension probe"])
            store = MemoryStore(folder.name, embed=lambda texts: manager.embed(list(texts)), dim=len(vectors[0]))
            store.add_memories(memory_entries(documents))

            def search(query: str, k: int) -> list[dict[str, Any]]:
                return search_store(store, query=query, k=k)

            _libraries[digest] = ((folder, store), search)
        return _libraries[digest][1]
