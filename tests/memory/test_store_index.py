"""MemoryStore index policy: exact below the threshold, IVF_PQ above it, recall against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from memory.store import CHUNK_LEVEL, MemoryStore
from tests.memory.embedder import HashingEmbedder, LookupEmbedder, clustered_vectors


def _memories(start: int, count: int, chunks_per_memory: int) -> list[dict]:
    return [
        {
            "summary": f"memory number {m} about subject s{m % 7}",
            "chunks": [{"text": f"chunk {c} of memory {m} token t{m}x{c}"} for c in range(chunks_per_memory)],
            "run_id": m,
        }
        for m in range(start, start + count)
    ]


def test_index_policy_switches_at_the_threshold_and_stats_report_it(tmp_path):
    store = MemoryStore(str(tmp_path / "m"), embed=HashingEmbedder(16), dim=16, exact_threshold=300)
    store.add_memories(_memories(0, 28, 10))  # 280 chunk rows, 28 summaries

    below = store.ensure_indexes()

    assert below.tables["chunks"].index_type == "exact"
    assert below.tables["chunks"].action == "none"
    assert store.stats()["index"]["chunks"]["type"] == "exact"

    store.add_memories(_memories(28, 4, 10))  # 320 chunk rows
    crossed = store.ensure_indexes()
    stats = store.stats()

    assert crossed.tables["chunks"].action == "built"
    assert crossed.tables["chunks"].index_type == "IVF_PQ"
    assert crossed.tables["chunks"].num_partitions == 1
    assert crossed.tables["chunks"].num_sub_vectors == 2  # dim / 8
    assert crossed.tables["summaries"].index_type == "exact"  # 32 summaries
    assert stats["index"]["chunks"]["type"] == "IVF_PQ"
    assert stats["index"]["chunks"]["built_at"] is not None
    assert stats["index"]["chunks"]["trained_rows"] == 320
    assert stats["index"]["summaries"]["type"] == "exact"
    assert stats["rows"] == {1: 32, 3: 320}
    assert store.ensure_indexes().tables["chunks"].action == "none"

    # Under 20% growth the index is only topped up; past it, retrained.
    store.add_memories(_memories(32, 4, 10))  # 360 rows, +12.5%
    assert store.ensure_indexes().tables["chunks"].action == "none"
    assert store.stats()["index"]["chunks"]["unindexed_rows"] == 0
    store.add_memories(_memories(36, 4, 10))  # 400 rows, +25% on 320
    grown = store.ensure_indexes()
    assert grown.tables["chunks"].action == "rebuilt"
    assert store.stats()["index"]["chunks"]["trained_rows"] == 400
    assert store.ensure_indexes(force=True).tables["chunks"].action == "rebuilt"

    # Search through the index still finds an exact chunk.
    hits = store.search_flat("chunk 3 of memory 37 token t37x3", k=3, level=CHUNK_LEVEL)
    assert hits[0].text == "chunk 3 of memory 37 token t37x3"

    for record in store.list_summaries(0, 11):
        store.delete_memory(record.id)  # 290 rows left
    dropped = store.ensure_indexes()
    assert dropped.tables["chunks"].action == "dropped"
    assert store.stats()["index"]["chunks"]["type"] == "exact"
    store.close()


def test_ivf_pq_recall_at_10_against_brute_force(tmp_path):
    dim, n, per_memory = 64, 20_000, 10
    vectors = clustered_vectors(n, dim, clusters=64, seed=1)
    summaries = clustered_vectors(n // per_memory, dim, clusters=64, seed=2)
    table = {}
    memories = []
    for m in range(n // per_memory):
        summary = f"summary {m}"
        table[summary] = summaries[m]
        chunks = []
        for c in range(per_memory):
            text = f"chunk {m * per_memory + c}"
            table[text] = vectors[m * per_memory + c]
            chunks.append({"text": text})
        memories.append({"summary": summary, "chunks": chunks})
    store = MemoryStore(str(tmp_path / "m"), embed=LookupEmbedder(table, dim), dim=dim, exact_threshold=10_000)
    store.add_memories(memories)

    report = store.ensure_indexes()

    assert report.tables["chunks"].index_type == "IVF_PQ"
    assert report.tables["chunks"].num_partitions == 5  # round(20000 / 4096)
    assert report.tables["summaries"].index_type == "exact"  # 2,000 rows
    rng = np.random.default_rng(3)
    queries = clustered_vectors(40, dim, clusters=64, seed=1)  # same centres, fresh points
    queries = queries + 0.01 * rng.standard_normal(queries.shape).astype(np.float32)
    recalls = []
    for q in queries:
        qn = q / np.linalg.norm(q)
        truth = set(np.argsort(-(vectors @ qn))[:10].tolist())
        hits = store.search_flat_vector(q, k=10, level=CHUNK_LEVEL)
        found = {int(h.text.split()[1]) for h in hits}
        recalls.append(len(found & truth) / 10)
    assert np.mean(recalls) >= 0.95, f"recall@10 {np.mean(recalls):.3f}"
    store.close()


@pytest.mark.parametrize("dim, expected", [(384, 48), (64, 8), (20, 2), (7, 1)])
def test_sub_vectors_follow_dim_over_eight(dim, expected):
    from memory.store import _num_sub_vectors

    assert _num_sub_vectors(dim) == expected
    assert dim % _num_sub_vectors(dim) == 0
