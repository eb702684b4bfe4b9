"""Where runs keep their graph checkpoints: the PostgreSQL database itself when the product runs on one
(so any worker can resume any run), else a SQLite file under var/ (one host).

The PostgreSQL tables are made by a migration (`personas/migrations/0006_graph_checkpoints.py`) and
checked once per process before first use. Several processes may get there at once: they take turns on
an advisory lock, polled rather than waited on, because a session blocked inside a statement keeps a
snapshot that the checkpointer's concurrent index builds would wait for.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

SETUP_LOCK = 0xA4_97
# Django's own database options, which are not libpq's.
_DJANGO_ONLY_OPTIONS = {"pool", "server_side_binding", "isolation_level", "assume_role", "cursor_factory"}
_ready: set[str] = set()
_ready_lock = threading.Lock()


def _connect(db: dict[str, Any]) -> Any:
    import psycopg
    from psycopg.rows import dict_row

    options = {k: v for k, v in (db.get("OPTIONS") or {}).items() if k not in _DJANGO_ONLY_OPTIONS}
    params = {"dbname": db["NAME"], "user": db.get("USER") or None, "password": db.get("PASSWORD") or None,
              "host": db.get("HOST") or None, "port": db.get("PORT") or None, **options}
    return psycopg.connect(**{k: v for k, v in params.items() if v is not None},
                           autocommit=True, prepare_threshold=0, row_factory=dict_row)


def postgres_setup(db: dict[str, Any]) -> None:
    """Create or migrate the checkpoint tables (idempotent); one process at a time."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with _connect(db) as conn:
        while not conn.execute("SELECT pg_try_advisory_lock(%s) AS got", [SETUP_LOCK]).fetchone()["got"]:
            time.sleep(0.2)
        try:
            PostgresSaver(conn).setup()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [SETUP_LOCK])


@contextlib.contextmanager
def checkpointer(db: dict[str, Any], *, vendor: str, sqlite_path: Path) -> Iterator[Any]:
    """A checkpointer for one run's execution, closed after it."""
    if vendor != "postgresql":
        conn = sqlite3.connect(sqlite_path, check_same_thread=False, timeout=30)
        try:
            yield SqliteSaver(conn)
        finally:
            conn.close()
        return
    from langgraph.checkpoint.postgres import PostgresSaver

    key = f"{db.get('HOST')}:{db.get('PORT')}/{db['NAME']}"
    with _ready_lock:
        if key not in _ready:
            postgres_setup(db)
            _ready.add(key)
    conn = _connect(db)
    try:
        yield PostgresSaver(conn)
    finally:
        conn.close()
