"""The read side of the memory store's searches: one query description, two ways to run it.

A search is a few independent reads per stage (vector and full-text, on one or
both tables). ``AsyncReads`` runs them through LanceDB's async client on the
store's loop thread. ``DirectReads`` runs them through the Lance dataset API
(the format LanceDB tables are stored in; same files, same indexes): each read
is one blocking call into Rust that releases the GIL, so the reads of a stage
run in parallel on a small thread pool and skip the asyncio bridge, which costs
about 2 ms a query here, the better part of a 100k-row query. Writes, index
builds and version restores stay with LanceDB (memory/store.py).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import lance
import numpy as np
import pyarrow as pa
from lance.dataset import serialize_row_addrs

__all__ = ["AsyncReads", "DirectReads", "FragmentKey", "Pinned", "Read", "direct_reads_supported"]

T = TypeVar("T")

# What identifies one fragment's rows: id, physical rows, deletion file id, data
# files. Equal keys in two versions mean the fragment's live rows are unchanged.
FragmentKey = tuple[int, int, int | None, tuple[str, ...]]


@dataclass(frozen=True)
class Read:
    """One query of a search.

    Exactly one of ``vector`` (nearest neighbours by cosine distance, adds
    ``_distance``), ``text`` (BM25 over the ``text`` column, adds ``_score``) or
    neither (a filtered scan) is set. ``where`` is a SQL filter applied before
    the search. ``nprobes``/``refine_factor`` apply when the table has a vector
    index and ``exact`` is false.

    Three options only ``DirectReads`` runs, each meaningful within one pinned
    table version: ``positions`` takes the rows at those positions (in scan
    order, counting live rows only), ``fragment_ids`` limits a scan to those
    fragments, and ``row_addrs`` limits a search to those rows (by ``_rowid``)
    before it ranks them.
    """

    table: str
    columns: tuple[str, ...]
    vector: np.ndarray | None = None
    text: str | None = None
    where: str | None = None
    limit: int | None = None
    exact: bool = False
    nprobes: int | None = None
    refine_factor: int | None = None
    row_id: bool = False  # add ``_rowid`` (valid within one table version)
    positions: np.ndarray | None = None
    fragment_ids: tuple[int, ...] | None = None
    row_addrs: np.ndarray | None = None


@dataclass(frozen=True)
class Pinned:
    """Reads at the table versions of the batch being run (see DirectReads.batch).

    ``read`` runs a read in the calling thread; ``start`` runs it on the pool
    and returns a function that waits for its result.
    """

    read: Callable[[Read], pa.Table]
    start: Callable[[Read], Callable[[], pa.Table]]
    version: Callable[[str], int]
    fragments: Callable[[str], tuple[FragmentKey, ...]]


def direct_reads_supported(uri: str) -> bool:
    """Lance opens local directories itself; other URIs (memory://, db://…) go through LanceDB."""
    return "://" not in uri or uri.startswith("file://")


class AsyncReads:
    """Runs reads with LanceDB's async query builder, a stage's reads gathered concurrently.

    Each query checks out the latest version on its own, so row ids from two
    reads of one batch may belong to different versions.
    """

    def __init__(self, tables: Mapping[str, Any], run: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self._tables = tables
        self._run = run

    def run(self, reads: Sequence[Read]) -> list[pa.Table]:
        """The reads' results, in order."""

        async def gather() -> list[pa.Table]:
            return list(await asyncio.gather(*(self._query(r).to_arrow() for r in reads)))

        return self._run(gather()) if reads else []

    def _query(self, read: Read) -> Any:
        if read.positions is not None or read.fragment_ids is not None or read.row_addrs is not None:
            raise ValueError("reads by position, fragment or row address need a pinned version (DirectReads)")
        q = self._tables[read.table].query()
        if read.vector is not None:
            q = q.nearest_to(read.vector).distance_type("cosine")
            if read.exact:
                q = q.bypass_vector_index()
            else:
                if read.nprobes is not None:
                    q = q.nprobes(read.nprobes)
                if read.refine_factor:
                    q = q.refine_factor(read.refine_factor)
        elif read.text is not None:
            q = q.nearest_to_text(read.text, columns="text")
        q = q.select(list(read.columns))
        if read.row_id:
            q = q.with_row_id()
        if read.where:
            q = q.where(read.where)  # the async API prefilters by default
        if read.limit is not None:
            q = q.limit(read.limit)
        return q

    def invalidate(self) -> None:
        """LanceDB's own read-consistency setting keeps its handles fresh."""

    def close(self) -> None:
        pass


class DirectReads:
    """Runs reads with the Lance dataset API on a per-process thread pool.

    Each table's dataset is checked out at its latest version before a batch
    when ``interval`` has passed since the last check (``timedelta(0)``: every
    batch; ``None``: only after this store's own writes), which matches the
    LanceDB connection's read-consistency setting. The check costs ~15 µs on a
    local disk. Batches are serialised per store: checking out moves the shared
    dataset handles, which concurrent reads must not see half-way.
    """

    def __init__(self, locations: Mapping[str, str], interval: timedelta | None) -> None:
        self._locations = dict(locations)
        self._interval = None if interval is None else interval.total_seconds()
        self._lock = threading.Lock()
        self._datasets: dict[str, lance.LanceDataset] = {}
        self._checked: dict[str, float] = {}
        self._pid: int | None = None
        self._pool: ThreadPoolExecutor | None = None

    def run(self, reads: Sequence[Read]) -> list[pa.Table]:
        """The reads' results, in order."""

        def all_of(pinned: Pinned) -> list[pa.Table]:
            # The calling thread does the first read itself: one hand-off fewer.
            rest = [pinned.start(r) for r in reads[1:]]
            return [pinned.read(r) for r in reads[:1]] + [result() for result in rest]

        return self.batch(all_of, tables={r.table for r in reads})

    def batch(self, work: Callable[[Pinned], T], *, tables: Iterable[str]) -> T:
        """``work(pinned)``, its reads seeing one version of each of ``tables``.

        Row ids and positions from all of them can be joined. Reads ``work``
        starts run on the pool while it goes on.
        """
        with self._lock:
            datasets = self._fresh(set(tables))
            pool = self._pool
            assert pool is not None
            futures: list[Future[pa.Table]] = []

            def start(read: Read) -> Callable[[], pa.Table]:
                future = pool.submit(self._one, datasets, read)
                futures.append(future)
                return future.result

            pinned = Pinned(
                read=lambda read: self._one(datasets, read),
                start=start,
                version=lambda table: datasets[table].version,
                fragments=lambda table: tuple(map(_fragment_key, datasets[table].get_fragments())),
            )
            try:
                return work(pinned)
            finally:
                # Pool reads use the dataset handles: they finish before the lock
                # lets another batch move them, even when ``work`` failed.
                wait(futures)

    def invalidate(self) -> None:
        """Make the next batch check out the latest versions (after a write or restore)."""
        with self._lock:
            self._checked.clear()

    def close(self) -> None:
        with self._lock:
            self._datasets.clear()
            self._checked.clear()
            if self._pool is not None and self._pid == os.getpid():
                self._pool.shutdown(wait=False)
            self._pool = None

    def _fresh(self, tables: set[str]) -> dict[str, lance.LanceDataset]:
        if self._pid != os.getpid():
            # A forked child inherits neither the pool's threads nor Lance's runtime state.
            self._datasets.clear()
            self._checked.clear()
            self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="memory-read")
            self._pid = os.getpid()
        now = time.monotonic()
        for key in tables:
            ds = self._datasets.get(key)
            if ds is None:
                self._datasets[key] = lance.dataset(self._locations[key])
                self._checked[key] = now
                continue
            last = self._checked.get(key)
            if last is None or (self._interval is not None and now - last >= self._interval):
                ds.checkout_latest()
                self._checked[key] = now
        return self._datasets

    @staticmethod
    def _one(datasets: Mapping[str, lance.LanceDataset], read: Read) -> pa.Table:
        ds = datasets[read.table]
        if read.positions is not None:
            return ds.take(read.positions, columns=[*read.columns, *(["_rowid"] if read.row_id else [])])
        kwargs: dict[str, Any] = {
            "columns": list(read.columns),
            "filter": read.where,
            "limit": read.limit,
            "disable_scoring_autoprojection": True,
            "with_row_id": read.row_id,
        }
        if read.vector is not None:
            nearest: dict[str, Any] = {
                "column": "vector",
                "q": np.asarray(read.vector, dtype=np.float32),
                "k": read.limit,
                "metric": "cosine",
            }
            if read.exact:
                nearest["use_index"] = False
            else:
                if read.nprobes is not None:
                    nearest["minimum_nprobes"] = nearest["maximum_nprobes"] = read.nprobes
                if read.refine_factor:
                    nearest["refine_factor"] = read.refine_factor
            kwargs["nearest"] = nearest
            kwargs["prefilter"] = bool(read.where)
        elif read.text is not None:
            kwargs["full_text_query"] = read.text  # the table's one inverted index (on "text")
            kwargs["prefilter"] = bool(read.where)
        else:
            kwargs["scan_in_order"] = True  # (the default) positions count rows in this order
        if read.row_addrs is not None:
            kwargs["row_addr_allowlist"] = serialize_row_addrs(read.row_addrs.tolist())
            kwargs["prefilter"] = True
        if read.fragment_ids is not None:
            kwargs["fragments"] = [ds.get_fragment(i) for i in read.fragment_ids]
        return ds.scanner(**kwargs).to_table()


def _fragment_key(fragment: lance.LanceFragment) -> FragmentKey:
    meta = fragment.metadata
    deletions = meta.deletion_file
    return (
        meta.id,
        meta.physical_rows,
        None if deletions is None else deletions.id,
        tuple(f.path for f in meta.files),
    )
