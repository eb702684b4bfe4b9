"""Hierarchical long-term memory (summaries over episodic chunks) stored in LanceDB."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, BTree, IvfPq
from lancedb.query import ColumnOrdering
from threadpoolctl import ThreadpoolController

from memory.reads import AsyncReads, DirectReads, FragmentKey, Pinned, Read, direct_reads_supported

__all__ = [
    "CHUNK_LEVEL",
    "SUMMARY_LEVEL",
    "Hit",
    "IndexReport",
    "MemoryChunk",
    "MemoryRecord",
    "MemoryStore",
    "TableIndexReport",
]

# The seeds number the hierarchy 1 (summary) .. 3 (episodic chunk); level 2 is unused
# but the numbers are kept so stored data matches the seeds' vocabulary.
SUMMARY_LEVEL = 1
CHUNK_LEVEL = 3

SUMMARIES = "summaries"
CHUNKS = "chunks"
_TABLES = {SUMMARIES: "memory_summaries", CHUNKS: "memory_chunks"}
_LEVEL_TABLE = {SUMMARY_LEVEL: SUMMARIES, CHUNK_LEVEL: CHUNKS}

# IVF_PQ trains 256 centroids per sub-vector (8-bit codes); with fewer rows k-means
# has nothing to learn, so the index is never built below this however low the
# configured threshold is.
_MIN_INDEX_ROWS = 256
_ROWS_PER_PARTITION = 4096
_REBUILD_GROWTH = 0.20
# Reciprocal-rank fusion constant from Cormack et al.; 60 keeps a single list's
# top hit from drowning the other list.
_RRF_K = 60
# Stage 2 of a hierarchical search reads all chunks of the chosen memories when
# there are at most this many (a run's memory has a few dozen).
_STAGE2_MAX_ROWS = 4096
_STAGE1_COLUMNS = ("id", "text", "run_id", "created_at")
_STAGE2_COLUMNS = ("id", "parent_id", "text", "persona", "step_ids", "metadata")
# The vector index name records the row count it was trained on, so every process
# (and a restored table version) can tell how far the table has grown since then,
# even after optimize() folded new rows into the index.
_VECTOR_INDEX_RE = re.compile(r"^vector_ivfpq_p(\d+)_n(\d+)$")
# Keep old table versions (living-image restores need them); optimize() would
# otherwise prune anything older than a week.
_KEEP_VERSIONS = timedelta(days=365 * 100)
_CHUNK_KEYS = frozenset({"text", "persona", "step_id", "step_ids", "metadata"})
_RESULT_COLUMNS = [
    "id",
    "level",
    "parent_id",
    "position",
    "text",
    "run_id",
    "step_ids",
    "persona",
    "created_at",
    "metadata",
]

Embedder = Callable[[list[str]], np.ndarray]
T = TypeVar("T")


@dataclass(frozen=True)
class MemoryChunk:
    """One level-3 episodic chunk (a persona's utterance or a step's output)."""

    id: str
    parent_id: str
    position: int
    text: str
    persona: str | None
    step_ids: list[int]
    run_id: int | None
    created_at: datetime
    metadata: dict[str, Any]


@dataclass(frozen=True)
class MemoryRecord:
    """A level-1 summary and (when fetched with get_memory) its chunks in order."""

    id: str
    summary: str
    run_id: int | None
    persona: str | None
    step_ids: list[int]
    created_at: datetime
    metadata: dict[str, Any]
    chunks: list[MemoryChunk] = field(default_factory=list)
    chunk_count: int = 0


@dataclass(frozen=True)
class Hit:
    """A search result; for chunks, parent_* describe the summary it belongs to.

    score is the fused (reciprocal-rank) score, higher is better; distance is the
    cosine distance to the query vector when the row was a vector match; text_score
    the BM25 score when it was a full-text match.
    """

    id: str
    level: int
    text: str
    score: float
    distance: float | None
    text_score: float | None
    parent_id: str | None
    parent_text: str | None
    parent_score: float | None
    run_id: int | None
    persona: str | None
    step_ids: list[int]
    created_at: datetime
    metadata: dict[str, Any]


@dataclass(frozen=True)
class TableIndexReport:
    """What ensure_indexes did to one table's vector index, and why."""

    table: str
    rows: int
    index_type: str  # "exact" (brute force) or "IVF_PQ"
    action: str  # "none" | "built" | "rebuilt" | "dropped"
    reason: str
    num_partitions: int | None
    num_sub_vectors: int | None
    trained_rows: int | None
    built_at: datetime | None


@dataclass(frozen=True)
class IndexReport:
    """Outcome of one ensure_indexes run over both tables."""

    tables: dict[str, TableIndexReport]
    optimized: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.optimized) or any(t.action != "none" for t in self.tables.values())


class _Loop:
    """A per-process asyncio loop on a daemon thread.

    LanceDB's async API is its native one; its sync facade makes several thread
    hops per query (measured ~2x the latency here), so the store drives the async
    API itself and exposes a plain synchronous interface.
    """

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            # A forked worker inherits the loop object but not its thread.
            if cls._loop is None or cls._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="memory-store-loop", daemon=True).start()
                cls._loop, cls._pid = loop, os.getpid()
            return cls._loop


def _run(coro: Coroutine[Any, Any, T]) -> T:
    loop = _Loop.get()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("MemoryStore's sync API cannot be called from its own event loop")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _now() -> datetime:
    return datetime.now(UTC)


def _schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("level", pa.int8(), nullable=False),
            pa.field("parent_id", pa.string()),
            pa.field("position", pa.int32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("run_id", pa.int64()),
            pa.field("step_ids", pa.list_(pa.int64()), nullable=False),
            pa.field("persona", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("metadata", pa.string(), nullable=False),
        ]
    )


def _num_sub_vectors(dim: int) -> int:
    # dim/8 keeps 8 floats per sub-vector (SIMD-friendly); otherwise the largest
    # divisor of dim that leaves at least 8 floats per sub-vector.
    if dim % 8 == 0:
        return dim // 8
    for candidate in range(dim // 8, 0, -1):
        if dim % candidate == 0:
            return candidate
    return 1


def _num_partitions(rows: int) -> int:
    return max(1, round(rows / _ROWS_PER_PARTITION))


def _memory_id(value: object) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (TypeError, ValueError):
        raise ValueError(f"unknown memory id {value!r}: not a memory id (expected a UUID)") from None


def _sql_in(ids: Iterable[str]) -> str:
    # Only canonical UUID strings reach here (see _memory_id / uuid4), so quoting
    # cannot be escaped out of.
    return ", ".join(f"'{i}'" for i in ids)


def _clean_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} is empty")
    return value


def _clean_metadata(value: object, what: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(dict(value), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None


def _clean_run_id(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"run_id must be an int or None, got {value!r}")
    return int(value)


def _clean_step_ids(value: object, what: str) -> list[int]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise ValueError(f"{what} must be integer step ids, got {item!r}")
        out.append(int(item))
    return out


S = TypeVar("S")


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


_BLAS_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's BLAS limited to the calling thread for one product.

    A threaded OpenBLAS call leaves its worker threads spinning for a while
    afterwards; on a small machine they then compete with the Lance reads
    running next to the product, which doubled a search's CPU time here. One
    thread costs ~0.5 ms more on a 10k x 384 product. The setting is
    process-wide, so products of several stores take turns: interleaved, one
    would restore the other's "1" as the process's value.
    """
    with _BLAS_LOCK, _blas().limit(limits=1, user_api="blas"):
        yield


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows (or one vector) scaled to length 1, so a dot product is a cosine similarity."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _appended(old: tuple[FragmentKey, ...], new: tuple[FragmentKey, ...]) -> tuple[int, ...] | None:
    """Ids of the fragments ``new`` adds if it only appended to ``old``, else None."""
    if new[: len(old)] != old:
        return None
    return tuple(key[0] for key in new[len(old) :])


class _PerVersion(Generic[S]):
    """Something derived from one table, kept in memory for its current version.

    A new version that only appended fragments (new memories; an index build
    appends none) extends the held value with the new rows; any other change
    (delete, compaction, restore) reads the table again. Values are immutable:
    a search keeps using the one it got even if another search replaces it.
    """

    def __init__(self, read: Read, empty: S, extend: Callable[[S, pa.Table], S]) -> None:
        self._read = read
        self._empty = empty
        self._extend = extend
        self._lock = threading.Lock()
        self._held: tuple[int, tuple[FragmentKey, ...], S] | None = None

    def current(self, pinned: Pinned) -> S:
        version = pinned.version(self._read.table)
        with self._lock:
            held = self._held
            if held is None or held[0] != version:
                layout = pinned.fragments(self._read.table)
                added = None if held is None else _appended(held[1], layout)
                if held is None or added is None:  # (held is None implies added is None)
                    value = self._extend(self._empty, pinned.read(self._read))
                elif added:
                    value = self._extend(held[2], pinned.read(replace(self._read, fragment_ids=added)))
                else:
                    value = held[2]
                held = self._held = (version, layout, value)
            return held[2]

    def clear(self) -> None:
        with self._lock:
            self._held = None


@dataclass(frozen=True)
class _Summaries:
    """The summaries level in memory while it is searched exactly.

    Below the index threshold stage 1 of every hierarchical search is an exact
    scan of all summary vectors. LanceDB's brute-force path re-reads the vector
    column for each query (15 MB at 10k summaries, most of a 100k-row query's
    time here); this copy is scanned with one matrix product instead. Its size
    is bounded by the threshold (~1.5 KB a summary at 384 dims): the table gets
    its IVF_PQ index there and stage 1 goes back to LanceDB. Rows are also found
    by row id, valid for the version they were read at.
    """

    rows: list[dict[str, Any]]
    unit: np.ndarray
    by_row_id: dict[int, dict[str, Any]]

    @classmethod
    def empty(cls, dim: int) -> _Summaries:
        return cls([], np.empty((0, dim), dtype=np.float32), {})

    def extended(self, table: pa.Table) -> _Summaries:
        dim = self.unit.shape[1]
        unit = _unit(table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim).astype(np.float32))
        rows = table.drop_columns(["vector"]).to_pylist()
        return _Summaries(
            [*self.rows, *rows],
            np.vstack([self.unit, unit]) if self.rows else unit,
            {**self.by_row_id, **{row["_rowid"]: row for row in rows}},
        )

    def nearest(self, vector: np.ndarray, limit: int) -> list[dict[str, Any]]:
        if not self.rows:
            return []
        with _one_blas_thread():
            distances = 1.0 - self.unit @ _unit(vector)
        limit = min(limit, len(self.rows))
        best = np.argpartition(distances, limit - 1)[:limit]
        best = best[np.argsort(distances[best], kind="stable")]
        return [dict(self.rows[i], _distance=float(distances[i])) for i in best]


@dataclass(frozen=True)
class _ChunkPositions:
    """Where each memory's chunks sit in one version of the chunks table.

    Stage 2 of a hierarchical search takes the chosen memories' chunks by
    position (about 1.5 ms for 50 rows at 100k chunks) and limits its
    full-text search to their row addresses, where a parent_id filter through
    the B-tree costs about 7 ms for the fetch and doubles the full-text read.
    Costs 16 bytes a chunk plus ~100 bytes a memory; a full read takes ~20 ms
    at 100k chunks, and new memories only add their own rows.
    """

    row_addrs: np.ndarray  # _rowid by position
    by_parent: dict[str, np.ndarray]  # parent id -> positions

    def extended(self, table: pa.Table) -> _ChunkPositions:
        n = table.num_rows
        if not n:
            return self
        start = len(self.row_addrs)
        encoded = table.column("parent_id").combine_chunks().dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        order = np.argsort(codes, kind="stable")
        groups = np.split(start + order, np.cumsum(np.bincount(codes, minlength=len(encoded.dictionary)))[:-1])
        by_parent = dict(self.by_parent)
        for parent, positions in zip(encoded.dictionary.to_pylist(), groups):
            old = by_parent.get(parent)
            by_parent[parent] = positions if old is None else np.concatenate([old, positions])
        row_addrs = np.concatenate([self.row_addrs, table.column("_rowid").to_numpy()])
        return _ChunkPositions(row_addrs, by_parent)

    def of(self, parents: Iterable[str]) -> np.ndarray:
        found = [self.by_parent[p] for p in parents if p in self.by_parent]
        return np.sort(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)


def _rrf(*rankings: Sequence[str]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking):
            scores[key] = scores.get(key, 0.0) + 1.0 / (_RRF_K + rank + 1)
    return scores


class MemoryStore:
    """BABS's long-term memory: summaries (level 1) over episodic chunks (level 3).

    Two LanceDB tables share one schema: ``memory_summaries`` and ``memory_chunks``
    (chunks point at their summary through ``parent_id``). Keeping them apart lets
    stage 1 of a hierarchical search scan only summaries, and lets each table get
    the vector index its own size calls for.

    Vector search is exact (brute force) until a table reaches ``exact_threshold``
    rows; ``ensure_indexes`` (run from a background job) then builds IVF_PQ and
    rebuilds it as the table grows. Full-text search uses LanceDB's native
    inverted index on ``text``; rows written since the last build are still found
    (LanceDB scans the unindexed tail), ensure_indexes folds them in.

    Parameters
    ----------
    uri: any LanceDB URI (a local directory, ``s3://…``, ``memory://``).
    embed: texts -> float array of shape (len(texts), dim).
    dim: embedding width; must match an existing store.
    exact_threshold: rows below which a table is searched exactly.
    nprobes / refine_factor: IVF_PQ query settings; ``nprobes=None`` probes
        ``max(min_nprobes, ceil(probe_fraction * partitions))`` partitions.
    index_sample_rate / index_max_iterations: k-means training effort for IVF_PQ
        (training vectors = sample_rate * centroids). LanceDB's defaults (256, 50)
        took ~5x longer at 100k x 384 (minutes of both cores); the cheaper index
        loses 1-2 recall points at equal nprobes, which the nprobes default buys back.
    read_consistency_interval: how stale another process's writes may be seen;
        0 = every read checks for a newer table version (cheap on a local disk;
        on object storage a few seconds saves a listing per query).
    direct_reads: run searches through the Lance dataset API (memory/reads.py);
        default: for local stores, the only ones Lance opens by itself.

    The API is synchronous: it drives LanceDB's async client on a private loop
    thread. From async code (Channels consumers) call it via sync_to_async.
    """

    def __init__(
        self,
        uri: str,
        *,
        embed: Embedder,
        dim: int,
        exact_threshold: int = 50_000,
        nprobes: int | None = None,
        min_nprobes: int = 16,
        probe_fraction: float = 0.1,
        refine_factor: int = 40,
        index_sample_rate: int = 64,
        index_max_iterations: int = 20,
        read_consistency_interval: timedelta | None = timedelta(0),
        direct_reads: bool | None = None,
    ) -> None:
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if exact_threshold < 0:
            raise ValueError("exact_threshold must be >= 0")
        if refine_factor < 1:
            raise ValueError("refine_factor must be >= 1")
        self.uri = os.path.abspath(os.path.expanduser(uri)) if "://" not in uri else uri
        self.dim = dim
        self.exact_threshold = exact_threshold
        self.refine_factor = refine_factor
        self._nprobes = nprobes
        self._index_sample_rate = index_sample_rate
        self._index_max_iterations = index_max_iterations
        self._min_nprobes = min_nprobes
        self._probe_fraction = probe_fraction
        self._embed = embed
        self._schema = _schema(dim)
        # Partitions of the current IVF_PQ index per table, cached so queries do
        # not list indexes; refreshed on open, ensure_indexes and stats.
        self._partitions: dict[str, int | None] = {SUMMARIES: None, CHUNKS: None}
        # In-memory copies for the direct-read path (see _Summaries, _ChunkPositions).
        self._summaries = _PerVersion(
            Read(table=SUMMARIES, columns=(*_STAGE1_COLUMNS, "vector"), row_id=True),
            _Summaries.empty(dim),
            _Summaries.extended,
        )
        self._chunk_positions = _PerVersion(
            Read(table=CHUNKS, columns=("parent_id",), row_id=True),
            _ChunkPositions(np.empty(0, dtype=np.uint64), {}),
            _ChunkPositions.extended,
        )
        self._db, self._tables = _run(self._open(read_consistency_interval))
        if direct_reads is None:
            direct_reads = direct_reads_supported(self.uri)
        if direct_reads:
            locations = _run(self._locations())
            self._reads: AsyncReads | DirectReads = DirectReads(locations, read_consistency_interval)
        else:
            self._reads = AsyncReads(self._tables, _run)

    # ------------------------------------------------------------------ setup

    async def _open(self, interval: timedelta | None) -> tuple[Any, dict[str, Any]]:
        if self.uri.startswith("/"):
            os.makedirs(self.uri, exist_ok=True)
        db = await lancedb.connect_async(self.uri, read_consistency_interval=interval)
        tables = {}
        for key, name in _TABLES.items():
            try:
                tbl = await db.open_table(name)
            except ValueError:
                try:
                    tbl = await db.create_table(name, schema=self._schema)
                except ValueError:
                    # Another process created it between our open and create.
                    tbl = await db.open_table(name)
            existing = (await tbl.schema()).field("vector").type
            if getattr(existing, "list_size", None) != self.dim:
                raise ValueError(
                    f"memory store at {self.uri} holds {existing.list_size}-dim vectors, "
                    f"but the embedder gives {self.dim}; re-embed into a new store"
                )
            tables[key] = tbl
        for key, tbl in tables.items():
            await self._ensure_scalar_indexes(key, tbl)
            await self._refresh_partitions(key, tbl)
        return db, tables

    async def _locations(self) -> dict[str, str]:
        return {key: await tbl.uri() for key, tbl in self._tables.items()}

    async def _ensure_scalar_indexes(self, key: str, tbl: Any) -> None:
        have = {tuple(ix.columns) for ix in await tbl.list_indices()}
        # FTS must exist before the first full-text query (LanceDB refuses
        # otherwise); it can be created on an empty table.
        if ("text",) not in have:
            await tbl.create_index("text", config=FTS(), replace=True)
        if ("id",) not in have:
            await tbl.create_index("id", config=BTree(), replace=True)
        # Stage 2 of hierarchical search prefilters on parent_id; the B-tree turns
        # that filter into an index lookup instead of a column scan.
        if key == CHUNKS and ("parent_id",) not in have:
            await tbl.create_index("parent_id", config=BTree(), replace=True)

    async def _vector_index(self, tbl: Any) -> Any | None:
        for ix in await tbl.list_indices():
            if tuple(ix.columns) == ("vector",):
                return ix
        return None

    async def _refresh_partitions(self, key: str, tbl: Any) -> None:
        ix = await self._vector_index(tbl)
        m = _VECTOR_INDEX_RE.match(ix.name) if ix is not None else None
        self._partitions[key] = int(m.group(1)) if m else (1 if ix is not None else None)

    def close(self) -> None:
        """Release table handles (the store is unusable afterwards)."""
        self._reads.close()
        for tbl in self._tables.values():
            tbl.close()

    # ----------------------------------------------------------------- writes

    def _embed_texts(
        self, texts: list[str], on_progress: Callable[[int, int], None] | None = None, batch: int = 32
    ) -> np.ndarray:
        if on_progress is None:
            return self._check_vectors(self._embed(texts), len(texts), "embedder output")
        parts = []
        for at in range(0, len(texts), batch):
            part = texts[at : at + batch]
            parts.append(self._check_vectors(self._embed(part), len(part), "embedder output"))
            on_progress(at + len(part), len(texts))
        return np.concatenate(parts) if parts else np.empty((0, self.dim), dtype=np.float32)

    def _check_vectors(self, vectors: object, n: int, what: str) -> np.ndarray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1 and n == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] != self.dim:
            raise ValueError(f"{what} has shape {arr.shape}, expected ({n}, {self.dim})")
        if not np.isfinite(arr).all():
            raise ValueError(f"{what} contains NaN or infinite values")
        # Cosine distance is undefined for a zero vector; LanceDB would silently
        # never return such a row.
        if (np.abs(arr).max(axis=1) == 0).any():
            raise ValueError(f"{what} contains an all-zero vector")
        return arr

    def _rows(
        self,
        *,
        ids: list[str],
        level: int,
        parent_ids: list[str | None],
        positions: list[int],
        texts: list[str],
        vectors: np.ndarray,
        run_ids: list[int | None],
        step_ids: list[list[int]],
        personas: list[str | None],
        created_at: datetime,
        metadata: list[str],
    ) -> pa.Table:
        n = len(ids)
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
        return pa.Table.from_arrays(
            [
                pa.array(ids, pa.string()),
                pa.array([level] * n, pa.int8()),
                pa.array(parent_ids, pa.string()),
                pa.array(positions, pa.int32()),
                pa.array(texts, pa.string()),
                pa.FixedSizeListArray.from_arrays(flat, self.dim),
                pa.array(run_ids, pa.int64()),
                pa.array(step_ids, pa.list_(pa.int64())),
                pa.array(personas, pa.string()),
                pa.array([created_at] * n, pa.timestamp("us", tz="UTC")),
                pa.array(metadata, pa.string()),
            ],
            schema=self._schema,
        )

    def add_memory(
        self,
        *,
        summary: str,
        chunks: Sequence[Mapping[str, Any]],
        run_id: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        persona: str | None = None,
    ) -> MemoryRecord:
        """Write one summary and its chunks; returns the stored record.

        Each chunk is ``{"text": str, "persona": str | None, "step_id": int | None}``
        (optionally ``step_ids`` and ``metadata``). Chunks are written before the
        summary so a memory only becomes visible to hierarchical search and
        browsing once it is complete.
        """
        return self.add_memories(
            [{"summary": summary, "chunks": chunks, "run_id": run_id, "metadata": metadata, "persona": persona}]
        )[0]

    def add_memories(
        self,
        memories: Sequence[Mapping[str, Any]],
        *,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[MemoryRecord]:
        """Bulk add_memory: one embed call and one write per table for all of them.

        Each item takes add_memory's keyword arguments as keys, and optionally ``id`` (a UUID the
        caller chose, so it can purge a write that failed half-way). ``on_progress(done, total)`` is
        called as the texts are embedded, in batches (an exception it raises stops the write).
        """
        if not memories:
            return []
        created = _now()
        s_rows: dict[str, list[Any]] = {k: [] for k in ("ids", "texts", "run_ids", "steps", "personas", "meta")}
        c_rows: dict[str, list[Any]] = {
            k: [] for k in ("ids", "parents", "pos", "texts", "run_ids", "steps", "personas", "meta")
        }
        records_chunks: list[list[MemoryChunk]] = []
        for m_index, mem in enumerate(memories):
            where = f"memory #{m_index}" if len(memories) > 1 else "memory"
            unknown = set(mem) - {"id", "summary", "chunks", "run_id", "metadata", "persona"}
            if unknown:
                raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
            summary = _clean_text(mem.get("summary"), f"{where}: summary")
            chunks = mem.get("chunks") or []
            if not isinstance(chunks, Sequence) or isinstance(chunks, (str, bytes)):
                raise ValueError(f"{where}: chunks must be a list of dicts")
            run_id = _clean_run_id(mem.get("run_id"))
            mem_id = _memory_id(mem["id"]) if mem.get("id") else str(uuid.uuid4())
            all_steps: list[int] = []
            chunk_records = []
            for pos, chunk in enumerate(chunks):
                what = f"{where}: chunk {pos}"
                if not isinstance(chunk, Mapping):
                    raise ValueError(f"{what} must be a dict with 'text', got {type(chunk).__name__}")
                bad = set(chunk) - _CHUNK_KEYS
                if bad:
                    raise ValueError(f"{what}: unknown field(s) {sorted(bad)}")
                text = _clean_text(chunk.get("text"), f"{what} text")
                chunk_persona = chunk.get("persona")
                if chunk_persona is not None and not isinstance(chunk_persona, str):
                    raise ValueError(f"{what} persona must be a string")
                steps = _clean_step_ids(chunk.get("step_id"), f"{what} step_id") + _clean_step_ids(
                    chunk.get("step_ids"), f"{what} step_ids"
                )
                meta = _clean_metadata(chunk.get("metadata"), f"{what} metadata")
                all_steps.extend(s for s in steps if s not in all_steps)
                chunk_id = str(uuid.uuid4())
                for k, v in zip(
                    ("ids", "parents", "pos", "texts", "run_ids", "steps", "personas", "meta"),
                    (chunk_id, mem_id, pos, text, run_id, steps, chunk_persona, meta),
                ):
                    c_rows[k].append(v)
                chunk_records.append(
                    MemoryChunk(chunk_id, mem_id, pos, text, chunk_persona, steps, run_id, created, json.loads(meta))
                )
            persona = mem.get("persona")
            if persona is not None and not isinstance(persona, str):
                raise ValueError(f"{where}: persona must be a string")
            meta = _clean_metadata(mem.get("metadata"), f"{where}: metadata")
            for k, v in zip(
                ("ids", "texts", "run_ids", "steps", "personas", "meta"),
                (mem_id, summary, run_id, all_steps, persona, meta),
            ):
                s_rows[k].append(v)
            records_chunks.append(chunk_records)

        vectors = self._embed_texts(s_rows["texts"] + c_rows["texts"], on_progress)
        n_s = len(s_rows["ids"])
        summaries = self._rows(
            ids=s_rows["ids"],
            level=SUMMARY_LEVEL,
            parent_ids=[None] * n_s,
            positions=[0] * n_s,
            texts=s_rows["texts"],
            vectors=vectors[:n_s],
            run_ids=s_rows["run_ids"],
            step_ids=s_rows["steps"],
            personas=s_rows["personas"],
            created_at=created,
            metadata=s_rows["meta"],
        )
        chunk_table = self._rows(
            ids=c_rows["ids"],
            level=CHUNK_LEVEL,
            parent_ids=c_rows["parents"],
            positions=c_rows["pos"],
            texts=c_rows["texts"],
            vectors=vectors[n_s:],
            run_ids=c_rows["run_ids"],
            step_ids=c_rows["steps"],
            personas=c_rows["personas"],
            created_at=created,
            metadata=c_rows["meta"],
        )

        async def write() -> None:
            if chunk_table.num_rows:
                await self._tables[CHUNKS].add(chunk_table)
            await self._tables[SUMMARIES].add(summaries)

        try:
            _run(write())
        finally:
            self._reads.invalidate()
        return [
            MemoryRecord(
                id=s_rows["ids"][i],
                summary=s_rows["texts"][i],
                run_id=s_rows["run_ids"][i],
                persona=s_rows["personas"][i],
                step_ids=s_rows["steps"][i],
                created_at=created,
                metadata=json.loads(s_rows["meta"][i]),
                chunks=records_chunks[i],
                chunk_count=len(records_chunks[i]),
            )
            for i in range(n_s)
        ]

    def delete_memory(self, memory_id: str, *, missing_ok: bool = False) -> int:
        """Delete a summary and all its chunks; returns the number of chunks removed.

        ``missing_ok`` also removes chunks whose summary was never written (a write cut off half-way)."""
        mid = _memory_id(memory_id)

        async def delete() -> int:
            if not missing_ok and not await self._tables[SUMMARIES].count_rows(f"id = '{mid}'"):
                raise ValueError(f"unknown memory id {memory_id!r}")
            n_chunks = await self._tables[CHUNKS].count_rows(f"parent_id = '{mid}'")
            # Summary first: once it is gone hierarchical search can no longer
            # reach the chunks, even if the second delete is interrupted.
            await self._tables[SUMMARIES].delete(f"id = '{mid}'")
            await self._tables[CHUNKS].delete(f"parent_id = '{mid}'")
            return n_chunks

        try:
            return _run(delete())
        finally:
            self._reads.invalidate()

    # ----------------------------------------------------------------- browse

    def count(self, *, level: int | None = None) -> int:
        """Number of memories (summaries) or, with ``level``, rows at that level."""
        key = SUMMARIES if level is None else self._level_key(level)
        return _run(self._tables[key].count_rows())

    def list_summaries(self, offset: int = 0, limit: int = 20) -> list[MemoryRecord]:
        """Newest memories first, without chunk bodies (chunk_count is filled in)."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        if limit == 0:
            return []

        async def page() -> tuple[list[dict[str, Any]], Counter[str]]:
            rows = (
                await self._tables[SUMMARIES]
                .query()
                .select(_RESULT_COLUMNS)
                .order_by([ColumnOrdering(column_name="created_at", ascending=False)])
                .offset(offset)
                .limit(limit)
                .to_list()
            )
            counts: Counter[str] = Counter()
            if rows:
                parents = (
                    await self._tables[CHUNKS]
                    .query()
                    .where(f"parent_id IN ({_sql_in(r['id'] for r in rows)})")
                    .select(["parent_id"])
                    .to_arrow()
                )
                counts.update(parents.column("parent_id").to_pylist())
            return rows, counts

        rows, counts = _run(page())
        return [self._record(r, chunk_count=counts[r["id"]]) for r in rows]

    def get_memory(self, memory_id: str) -> MemoryRecord:
        """A memory with its chunks in their original order."""
        mid = _memory_id(memory_id)

        async def fetch() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return await asyncio.gather(
                self._tables[SUMMARIES].query().where(f"id = '{mid}'").select(_RESULT_COLUMNS).to_list(),
                self._tables[CHUNKS].query().where(f"parent_id = '{mid}'").select(_RESULT_COLUMNS).to_list(),
            )

        summary_rows, chunk_rows = _run(fetch())
        if not summary_rows:
            raise ValueError(f"unknown memory id {memory_id!r}")
        chunks = [self._chunk(r) for r in sorted(chunk_rows, key=lambda r: r["position"])]
        return self._record(summary_rows[0], chunks=chunks, chunk_count=len(chunks))

    @staticmethod
    def _record(
        row: Mapping[str, Any], *, chunks: list[MemoryChunk] | None = None, chunk_count: int = 0
    ) -> MemoryRecord:
        return MemoryRecord(
            id=row["id"],
            summary=row["text"],
            run_id=row["run_id"],
            persona=row["persona"],
            step_ids=list(row["step_ids"] or []),
            created_at=row["created_at"],
            metadata=json.loads(row["metadata"] or "{}"),
            chunks=chunks or [],
            chunk_count=chunk_count,
        )

    @staticmethod
    def _chunk(row: Mapping[str, Any]) -> MemoryChunk:
        return MemoryChunk(
            id=row["id"],
            parent_id=row["parent_id"],
            position=row["position"],
            text=row["text"],
            persona=row["persona"],
            step_ids=list(row["step_ids"] or []),
            run_id=row["run_id"],
            created_at=row["created_at"],
            metadata=json.loads(row["metadata"] or "{}"),
        )

    # ----------------------------------------------------------------- search

    @staticmethod
    def _level_key(level: int) -> str:
        try:
            return _LEVEL_TABLE[level]
        except KeyError:
            raise ValueError(f"level must be {SUMMARY_LEVEL} or {CHUNK_LEVEL}, got {level!r}") from None

    def _query_vector(self, query: str) -> np.ndarray:
        _clean_text(query, "query")
        return self._embed_texts([query])[0]

    def nprobes_for(self, table: str) -> int:
        """The nprobes a vector query on ``table`` ("summaries"/"chunks") uses."""
        if self._nprobes is not None:
            return self._nprobes
        partitions = self._partitions.get(table) or 1
        return max(self._min_nprobes, math.ceil(self._probe_fraction * partitions))

    def _vector_read(
        self,
        key: str,
        vector: np.ndarray,
        limit: int,
        *,
        where: str | None = None,
        exact: bool = False,
        columns: Sequence[str] = _RESULT_COLUMNS,
    ) -> Read:
        # Without refine the PQ-compressed distances decide the final order and
        # recall collapses; refine re-ranks refine_factor*limit candidates on the
        # full vectors. Both are ignored while the table has no index.
        return Read(
            table=key,
            columns=(*columns, "_distance"),
            vector=vector,
            where=where,
            limit=limit,
            exact=exact,
            nprobes=None if exact else self.nprobes_for(key),
            refine_factor=None if exact else self.refine_factor,
        )

    @staticmethod
    def _text_read(
        key: str, text: str, limit: int, *, where: str | None = None, columns: Sequence[str] = _RESULT_COLUMNS
    ) -> Read:
        return Read(table=key, columns=(*columns, "_score"), text=text, where=where, limit=limit)

    def search_hierarchical(self, query: str, *, k: int = 10, summaries_k: int = 5) -> list[Hit]:
        """Two-stage hybrid search: best summaries first, then their best chunks.

        Stage 1 ranks summaries by reciprocal-rank fusion of full-text (BM25) and
        vector similarity; stage 2 reads the chunks of the top ``summaries_k``
        summaries (prefiltered on parent_id), fusing each chunk's own vector and
        text ranks with its parent's rank. Each stage's reads run concurrently.
        """
        return self.search_hierarchical_vector(
            self._query_vector(query), k=k, summaries_k=summaries_k, query_text=query
        )

    def search_hierarchical_vector(
        self,
        vector: np.ndarray | Sequence[float],
        *,
        k: int = 10,
        summaries_k: int = 5,
        query_text: str | None = None,
    ) -> list[Hit]:
        """search_hierarchical for a precomputed query vector (text part optional)."""
        vec = self._check_vectors(vector, 1, "query vector")[0]
        if k <= 0 or summaries_k <= 0:
            raise ValueError("k and summaries_k must be positive")
        return self._hierarchical(vec, k, summaries_k, query_text)

    def _stage1(
        self, vec: np.ndarray, depth: int, text: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Summaries nearest to ``vec`` and (with ``text``) best by BM25, with _STAGE1_COLUMNS."""
        if isinstance(self._reads, DirectReads) and self._partitions[SUMMARIES] is None:
            return self._reads.batch(lambda pinned: self._stage1_direct(pinned, vec, depth, text), tables=(SUMMARIES,))
        # Indexed: LanceDB's IVF_PQ search; the in-memory copy is not needed.
        self._summaries.clear()
        reads = [
            self._vector_read(SUMMARIES, vec, depth, columns=_STAGE1_COLUMNS)
        ]
        if text:
            reads.append(self._text_read(SUMMARIES, text, depth, columns=_STAGE1_COLUMNS))
        tables = self._reads.run(reads)
        return tables[0].to_pylist(), (tables[1].to_pylist() if text else [])

    def _stage1_direct(
        self, pinned: Pinned, vec: np.ndarray, depth: int, text: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """_stage1 below the index threshold: exact search on the in-memory summaries,
        while the full-text read (row ids only; the rows are in memory) runs alongside."""
        texts = None
        if text:
            texts = pinned.start(Read(table=SUMMARIES, columns=("_score",), text=text, limit=depth, row_id=True))
        summaries = self._summaries.current(pinned)
        vec_s = summaries.nearest(vec, depth)
        text_s = []
        for hit in texts().to_pylist() if texts else []:
            row = summaries.by_row_id.get(hit["_rowid"])
            if row is not None:
                text_s.append({**row, "_score": hit["_score"]})
        return vec_s, text_s

    def _hierarchical(self, vec: np.ndarray, k: int, summaries_k: int, text: str | None) -> list[Hit]:
        depth = max(2 * summaries_k, 10)
        vec_s, text_s = self._stage1(vec, depth, text)
        parent_scores = _rrf([r["id"] for r in vec_s], [r["id"] for r in text_s])
        parents: dict[str, dict[str, Any]] = {}
        for row in [*vec_s, *text_s]:
            parents.setdefault(row["id"], row)
        top = sorted(parent_scores, key=lambda i: -parent_scores[i])[:summaries_k]
        if not top:
            return []

        where = f"parent_id IN ({_sql_in(top)})"
        depth2 = max(3 * k, 20)
        # Stage 2 reads every chunk of the chosen memories (a few dozen rows)
        # with its vector and ranks them exactly here: one read instead of a
        # vector query plus a fetch. The direct path takes them by position and
        # searches their text by row address (_ChunkPositions); otherwise a
        # B-tree lookup on parent_id finds them. The full-text read only needs
        # ids: every candidate row is in hand.
        candidates: pa.Table | None
        text_c: list[dict[str, Any]] = []
        if isinstance(self._reads, DirectReads):
            candidates, text_c = self._reads.batch(
                lambda pinned: self._stage2_direct(pinned, top, text, depth2), tables=(CHUNKS,)
            )
        else:
            scan = Read(table=CHUNKS, columns=(*_STAGE2_COLUMNS, "vector"), where=where, limit=_STAGE2_MAX_ROWS + 1)
            reads = [scan]
            if text:
                reads.append(Read(table=CHUNKS, columns=("id", "_score"), text=text, where=where, limit=depth2))
            candidates, *texts = self._reads.run(reads)
            text_c = texts[0].to_pylist() if text else []
            if candidates.num_rows > _STAGE2_MAX_ROWS:
                candidates = None
        if candidates is not None:
            vectors = candidates.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, self.dim)
            distances = 1.0 - _unit(vectors) @ _unit(vec)
            rows = candidates.drop_columns(["vector"]).to_pylist()
            for row in rows:
                # A chunk is written with its memory and carries the memory's run
                # and time, so those come from the stage-1 row.
                parent = parents[row["parent_id"]]
                row.update(level=CHUNK_LEVEL, run_id=parent["run_id"], created_at=parent["created_at"])
            by_id = {row["id"]: row for row in rows}
            order = np.argsort(distances, kind="stable")[:depth2]
            vec_c = [dict(rows[i], _distance=float(distances[i])) for i in order]
        else:
            # Memories with thousands of chunks: let Lance rank them and return
            # only the nearest rows, and full rows for the text matches.
            reads = [self._vector_read(CHUNKS, vec, depth2, where=where, exact=True)]
            if text:
                reads.append(self._text_read(CHUNKS, text, depth2, where=where))
            results = self._reads.run(reads)
            vec_c = results[0].to_pylist()
            text_c = results[1].to_pylist() if text else []
            by_id = {}
            for row in [*vec_c, *text_c]:
                by_id.setdefault(row["id"], row)
        # (A chunk deleted between the two stages has no row: drop its text hit.)
        text_c = [r for r in text_c if r["id"] in by_id]
        # A chunk inherits its memory's stage-1 score (itself a fusion of the
        # summary's text and vector ranks) and adds its own ranks on top, so the
        # best memory's chunks lead unless another memory's chunk wins on both.
        scores = _rrf([r["id"] for r in vec_c], [r["id"] for r in text_c])
        for cid in list(scores):
            scores[cid] += parent_scores[by_id[cid]["parent_id"]]
        distances_by_id = {r["id"]: r["_distance"] for r in vec_c}
        text_scores = {r["id"]: r["_score"] for r in text_c}
        ranked = sorted(scores, key=lambda i: -scores[i])[:k]
        return [
            self._hit(
                by_id[cid],
                score=scores[cid],
                distance=distances_by_id.get(cid),
                text_score=text_scores.get(cid),
                parent=parents[by_id[cid]["parent_id"]],
                parent_score=parent_scores[by_id[cid]["parent_id"]],
            )
            for cid in ranked
        ]

    def _stage2_direct(
        self, pinned: Pinned, top: Sequence[str], text: str | None, limit: int
    ) -> tuple[pa.Table | None, list[dict[str, Any]]]:
        """The chunks of ``top`` and (with ``text``) their best by BM25, as (id, _score)."""
        chunks = self._chunk_positions.current(pinned)
        positions = chunks.of(top)
        if len(positions) > _STAGE2_MAX_ROWS:
            return None, []
        row_addrs = chunks.row_addrs[positions]
        texts = None
        if text and len(positions):
            texts = pinned.start(
                Read(table=CHUNKS, columns=("_score",), text=text, row_addrs=row_addrs, limit=limit, row_id=True)
            )
        candidates = pinned.read(Read(table=CHUNKS, columns=(*_STAGE2_COLUMNS, "vector"), positions=positions))
        if texts is None:
            return candidates, []
        ids = dict(zip(row_addrs.tolist(), candidates.column("id").to_pylist()))
        return candidates, [{"id": ids[r["_rowid"]], "_score": r["_score"]} for r in texts().to_pylist()]

    def search_flat(self, query: str, *, k: int = 10, level: int | None = None) -> list[Hit]:
        """Hybrid (full-text + vector, rank-fused) search over one level or both."""
        vec = self._query_vector(query)
        return self._flat(vec, k, level, query)

    def search_flat_vector(
        self,
        vector: np.ndarray | Sequence[float],
        *,
        k: int = 10,
        level: int | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """Nearest rows by cosine distance; ``exact=True`` bypasses any ANN index."""
        vec = self._check_vectors(vector, 1, "query vector")[0]
        return self._flat(vec, k, level, None, exact=exact)

    def search_text(self, query: str, *, k: int = 10, level: int | None = None) -> list[Hit]:
        """Full-text (BM25) search only."""
        _clean_text(query, "query")
        if k <= 0:
            raise ValueError("k must be positive")
        keys = [SUMMARIES, CHUNKS] if level is None else [self._level_key(level)]
        results = self._reads.run([self._text_read(key, query, k) for key in keys])
        rows = sorted((r for t in results for r in t.to_pylist()), key=lambda r: -r["_score"])[:k]
        return self._with_parents([(r, float(r["_score"]), None, r["_score"]) for r in rows])

    def _flat(self, vec: np.ndarray, k: int, level: int | None, text: str | None, exact: bool = False) -> list[Hit]:
        if k <= 0:
            raise ValueError("k must be positive")
        keys = [SUMMARIES, CHUNKS] if level is None else [self._level_key(level)]
        depth = k if not text else max(2 * k, 10)
        reads = [self._vector_read(key, vec, depth, exact=exact) for key in keys]
        if text:
            reads += [self._text_read(key, text, depth) for key in keys]
        results = [t.to_pylist() for t in self._reads.run(reads)]
        # Both levels live in one embedding space, so their cosine distances
        # compare directly; BM25 across the two tables is comparable enough for
        # ranking since both index the same kind of prose.
        vec_rows = sorted((r for rs in results[: len(keys)] for r in rs), key=lambda r: r["_distance"])[:depth]
        text_rows = sorted((r for rs in results[len(keys) :] for r in rs), key=lambda r: -r["_score"])[:depth]
        if not text:
            return self._with_parents([(r, -float(r["_distance"]), r["_distance"], None) for r in vec_rows[:k]])
        scores = _rrf([r["id"] for r in vec_rows], [r["id"] for r in text_rows])
        by_id: dict[str, dict[str, Any]] = {}
        for row in [*vec_rows, *text_rows]:
            by_id.setdefault(row["id"], row)
        distances = {r["id"]: r["_distance"] for r in vec_rows}
        text_scores = {r["id"]: r["_score"] for r in text_rows}
        ranked = sorted(scores, key=lambda i: -scores[i])[:k]
        return self._with_parents([(by_id[i], scores[i], distances.get(i), text_scores.get(i)) for i in ranked])

    def _with_parents(self, items: list[tuple[dict[str, Any], float, float | None, float | None]]) -> list[Hit]:
        parent_ids = {row["parent_id"] for row, *_ in items if row["parent_id"]}
        parents: dict[str, dict[str, Any]] = {}
        if parent_ids:
            (found,) = self._reads.run(
                [Read(table=SUMMARIES, columns=("id", "text"), where=f"id IN ({_sql_in(sorted(parent_ids))})")]
            )
            parents = {r["id"]: r for r in found.to_pylist()}
        return [
            self._hit(row, score=score, distance=dist, text_score=ts, parent=parents.get(row["parent_id"] or ""))
            for row, score, dist, ts in items
        ]

    @staticmethod
    def _hit(
        row: Mapping[str, Any],
        *,
        score: float,
        distance: float | None,
        text_score: float | None,
        parent: Mapping[str, Any] | None,
        parent_score: float | None = None,
    ) -> Hit:
        return Hit(
            id=row["id"],
            level=int(row["level"]),
            text=row["text"],
            score=float(score),
            distance=None if distance is None else float(distance),
            text_score=None if text_score is None else float(text_score),
            parent_id=row["parent_id"],
            parent_text=None if parent is None else parent["text"],
            parent_score=parent_score,
            run_id=row["run_id"],
            persona=row["persona"],
            step_ids=list(row["step_ids"] or []),
            created_at=row["created_at"],
            metadata=json.loads(row["metadata"] or "{}"),
        )

    # ---------------------------------------------------------------- indexes

    def ensure_indexes(self, *, force: bool = False) -> IndexReport:
        """Bring both tables' indexes in line with the index policy.

        Below ``exact_threshold`` rows a table has no vector index (exact search).
        At or above it gets IVF_PQ with ~rows/4096 partitions and dim/8
        sub-vectors, retrained once the table has grown (or shrunk) more than 20%
        since the rows the index was trained on. Rows written since the last build
        are then folded into the vector, full-text and B-tree indexes (and small
        files compacted) without pruning old versions. ``force`` retrains anyway.
        Meant for a background job: training takes seconds per 100k rows.
        """
        try:
            return _run(self._ensure_indexes(force))
        finally:
            self._reads.invalidate()

    async def _ensure_indexes(self, force: bool) -> IndexReport:
        reports = {}
        optimized = []
        for key, tbl in self._tables.items():
            await self._ensure_scalar_indexes(key, tbl)
            report = await self._ensure_vector_index(key, tbl, force)
            reports[key] = report
            stats = await tbl.stats()
            unindexed = 0
            for ix in await tbl.list_indices():
                if report.action in ("built", "rebuilt") and tuple(ix.columns) == ("vector",):
                    continue
                ix_stats = await tbl.index_stats(ix.name)
                unindexed = max(unindexed, ix_stats.num_unindexed_rows if ix_stats else 0)
            frag = stats["fragment_stats"] if isinstance(stats, dict) else stats.fragment_stats
            small_files = (
                (frag["num_small_fragments"] if isinstance(frag, dict) else frag.num_small_fragments) if frag else 0
            )
            if unindexed or small_files > 16:
                await tbl.optimize(cleanup_older_than=_KEEP_VERSIONS)
                optimized.append(key)
            await self._refresh_partitions(key, tbl)
        return IndexReport(tables=reports, optimized=optimized)

    async def _ensure_vector_index(self, key: str, tbl: Any, force: bool) -> TableIndexReport:
        rows = await tbl.count_rows()
        threshold = max(self.exact_threshold, _MIN_INDEX_ROWS)
        ix = await self._vector_index(tbl)
        m = _VECTOR_INDEX_RE.match(ix.name) if ix is not None else None
        trained = int(m.group(2)) if m else None
        nsv = _num_sub_vectors(self.dim)

        def report(
            action: str, reason: str, index: Any | None, parts: int | None, trained_rows: int | None
        ) -> TableIndexReport:
            return TableIndexReport(
                table=key,
                rows=rows,
                index_type="IVF_PQ" if index is not None or action in ("built", "rebuilt") else "exact",
                action=action,
                reason=reason,
                num_partitions=parts,
                num_sub_vectors=nsv if parts else None,
                trained_rows=trained_rows,
                built_at=getattr(index, "created_at", None),
            )

        if rows < threshold:
            if ix is None:
                return report("none", f"{rows} rows < threshold {threshold}: exact search", None, None, None)
            await tbl.drop_index(ix.name)
            return report("dropped", f"{rows} rows fell below threshold {threshold}", None, None, None)

        if ix is not None and m is not None and trained is not None and not force:
            growth = (rows - trained) / trained if trained else math.inf
            if abs(growth) <= _REBUILD_GROWTH:
                return report(
                    "none",
                    f"{growth:+.0%} rows since last build (limit {_REBUILD_GROWTH:.0%})",
                    ix,
                    int(m.group(1)),
                    trained,
                )
            reason = f"{growth:+.0%} rows since last build"
        elif ix is None:
            reason = f"{rows} rows >= threshold {threshold}"
        else:
            reason = "forced" if force else "unrecognised vector index"

        parts = _num_partitions(rows)
        name = f"vector_ivfpq_p{parts}_n{rows}"
        await tbl.create_index(
            "vector",
            config=IvfPq(
                distance_type="cosine",
                num_partitions=parts,
                num_sub_vectors=nsv,
                sample_rate=self._index_sample_rate,
                max_iterations=self._index_max_iterations,
            ),
            name=name,
            replace=True,
        )
        # A differently named index on the same column is not replaced by
        # create_index; drop the old one so queries use the new training.
        if ix is not None and ix.name != name:
            await tbl.drop_index(ix.name)
        new = await self._vector_index(tbl)
        return report("rebuilt" if ix is not None else "built", reason, new, parts, rows)

    # ------------------------------------------------------------ stats/versions

    def stats(self) -> dict[str, Any]:
        """Rows per level, vector index type and build time, table versions."""

        async def collect() -> dict[str, Any]:
            out: dict[str, Any] = {
                "uri": self.uri,
                "dim": self.dim,
                "exact_threshold": self.exact_threshold,
                "rows": {},
                "index": {},
                "full_text": {},
                "versions": {},
            }
            for key, tbl in self._tables.items():
                level = SUMMARY_LEVEL if key == SUMMARIES else CHUNK_LEVEL
                out["rows"][level] = await tbl.count_rows()
                out["versions"][key] = await tbl.version()
                await self._refresh_partitions(key, tbl)
                ix = await self._vector_index(tbl)
                m = _VECTOR_INDEX_RE.match(ix.name) if ix is not None else None
                ix_stats = await tbl.index_stats(ix.name) if ix is not None else None
                out["index"][key] = {
                    "type": "IVF_PQ" if ix is not None else "exact",
                    "built_at": ix.created_at.isoformat() if ix is not None and ix.created_at else None,
                    "num_partitions": int(m.group(1)) if m else None,
                    "num_sub_vectors": _num_sub_vectors(self.dim) if ix is not None else None,
                    "trained_rows": int(m.group(2)) if m else None,
                    "indexed_rows": ix_stats.num_indexed_rows if ix_stats else None,
                    "unindexed_rows": ix_stats.num_unindexed_rows if ix_stats else None,
                    "nprobes": self.nprobes_for(key) if ix is not None else None,
                    "refine_factor": self.refine_factor if ix is not None else None,
                }
                fts = next((i for i in await tbl.list_indices() if tuple(i.columns) == ("text",)), None)
                fts_stats = await tbl.index_stats(fts.name) if fts is not None else None
                out["full_text"][key] = {
                    "built_at": fts.created_at.isoformat() if fts is not None and fts.created_at else None,
                    "indexed_rows": fts_stats.num_indexed_rows if fts_stats else None,
                    "unindexed_rows": fts_stats.num_unindexed_rows if fts_stats else None,
                }
            out["memories"] = out["rows"][SUMMARY_LEVEL]
            return out

        return _run(collect())

    def table_versions(self) -> dict[str, int]:
        """Current version of each table, e.g. {"summaries": 7, "chunks": 9}."""

        async def versions() -> dict[str, int]:
            return {key: await tbl.version() for key, tbl in self._tables.items()}

        return _run(versions())

    def restore_versions(self, versions: Mapping[str, int]) -> dict[str, int]:
        """Roll the tables back to recorded versions (as from table_versions()).

        Restoring commits a new version equal to the old one, so history is kept
        and writes continue normally afterwards. Returns the new versions.
        """
        if not isinstance(versions, Mapping) or set(versions) != set(_TABLES):
            raise ValueError(f"versions must map exactly {sorted(_TABLES)} to version numbers, got {versions!r}")
        wanted = {}
        for key, value in versions.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"version for {key!r} must be a positive int, got {value!r}")
            wanted[key] = int(value)
        try:
            return _run(self._restore(wanted))
        finally:
            self._reads.invalidate()

    async def _restore(self, wanted: dict[str, int]) -> dict[str, int]:
        # Validate both before touching either, so a bad number changes nothing.
        for key, version in wanted.items():
            known = {v["version"] for v in await self._tables[key].list_versions()}
            if version not in known:
                raise ValueError(
                    f"{key} table has no version {version} (available: {min(known)}..{max(known)}; "
                    "pruned or never written)"
                )
        for key, version in wanted.items():
            tbl = self._tables[key]
            if version == await tbl.version():
                continue
            try:
                await tbl.checkout(version)
                await tbl.restore()
            finally:
                # restore() leaves the handle on the new latest version; after a
                # failure this takes it out of read-only time-travel mode.
                await tbl.checkout_latest()
            # Versions from before the first write predate the full-text and
            # B-tree indexes; full-text search refuses to run without them.
            await self._ensure_scalar_indexes(key, tbl)
            await self._refresh_partitions(key, tbl)
        return {key: await tbl.version() for key, tbl in self._tables.items()}
