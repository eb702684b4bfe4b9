"""MemoryStore behaviour: hierarchical and full-text search, browsing, deletes, bad input, version restore."""

from __future__ import annotations

import numpy as np
import pytest

from memory.store import CHUNK_LEVEL, SUMMARY_LEVEL, MemoryStore
from tests.memory.embedder import HashingEmbedder

DIM = 64

TOPICS = {
    "astronomy": (
        "astronomy night: telescope survey of spiral galaxies and a nebula",
        [
            "the telescope mirror needed a new coating before the galaxies survey",
            "spiral galaxies rotate faster at the edge than visible mass explains",
            "the nebula spectrum shows hydrogen emission lines",
        ],
    ),
    "pasta": (
        "cooking pasta recipes with tomato and basil",
        [
            "boil the pasta in salted water for nine minutes",
            # A decoy: reads like astronomy, but belongs to the cooking memory.
            "telescope galaxies nebula astronomy telescope galaxies",
            "tomato sauce simmers with basil and garlic",
        ],
    ),
    "garden": (
        "garden planning: roses, compost and irrigation",
        ["compost needs turning every week", "drip irrigation saves water for the roses"],
    ),
    "finance": (
        "quarterly finance review: budget, invoices and taxes",
        ["invoices from the supplier were paid late", "the budget for taxes was underestimated"],
    ),
    "music": (
        "music practice: piano scales and a violin duet",
        ["piano scales in every key before breakfast", "the violin duet needs slower tempo"],
    ),
}


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder(DIM)


@pytest.fixture(params=[True, False], ids=["direct-reads", "lancedb-reads"])
def store(request, tmp_path, embedder) -> MemoryStore:
    """Every behaviour holds with both ways of running searches (Lance datasets, LanceDB's client)."""
    s = MemoryStore(str(tmp_path / "memory"), embed=embedder, dim=DIM, direct_reads=request.param)
    yield s
    s.close()


@pytest.fixture
def topics(store) -> dict[str, object]:
    records = {}
    for run_id, (name, (summary, chunks)) in enumerate(TOPICS.items(), start=1):
        records[name] = store.add_memory(
            summary=summary,
            chunks=[
                {"text": text, "persona": ("BRICK", "ROBIN", "BABS")[i % 3], "step_id": run_id * 100 + i}
                for i, text in enumerate(chunks)
            ],
            run_id=run_id,
            metadata={"topic": name},
        )
    return records


def test_hierarchical_search_returns_chunks_of_selected_parents_only(store, topics):
    astro, pasta = topics["astronomy"], topics["pasta"]

    hits = store.search_hierarchical("telescope galaxies astronomy", k=10, summaries_k=1)

    assert hits, "a query matching a summary must return its chunks"
    assert {h.parent_id for h in hits} == {astro.id}
    assert {h.text for h in hits} == {c.text for c in astro.chunks}
    assert all(h.level == CHUNK_LEVEL and h.parent_text == astro.summary and h.run_id == 1 for h in hits)
    # The decoy chunk is the closest single chunk to the query, so a flat search
    # ranks it first: only the parent prefilter keeps it out above.
    decoy = pasta.chunks[1].text
    assert store.search_flat("telescope galaxies astronomy", k=3, level=CHUNK_LEVEL)[0].text == decoy


def test_hierarchical_search_ranks_the_matching_parent_first(store, topics):
    astro, pasta = topics["astronomy"], topics["pasta"]

    # All five memories pass stage 1, so the cooking memory's decoy chunk (the
    # best single chunk for this query) competes with the astronomy chunks.
    hits = store.search_hierarchical("telescope galaxies astronomy", k=10, summaries_k=5)

    assert hits[0].parent_id == astro.id
    assert hits[0].parent_score == max(h.parent_score for h in hits)
    decoy = next(i for i, h in enumerate(hits) if h.text == pasta.chunks[1].text)
    assert all(h.parent_id == astro.id for h in hits[:decoy])
    assert decoy >= 1
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert {c.id for c in astro.chunks} <= {h.id for h in hits}


def test_hierarchical_vector_variant_matches_text_variant_parents(store, topics, embedder):
    vector = embedder(["piano scales violin duet music"])[0]

    hits = store.search_hierarchical_vector(vector, k=5, summaries_k=1)

    assert {h.parent_id for h in hits} == {topics["music"].id}


def test_full_text_search_finds_an_exact_rare_keyword(store, topics):
    filler = [
        store.add_memory(summary=f"routine status report {i}", chunks=[{"text": f"nothing unusual on day {i}"}])
        for i in range(20)
    ]
    target = store.add_memory(
        summary="a meeting about the orchestra",
        chunks=[{"text": "the xylophonist arrived late", "persona": "ROBIN", "step_id": 7}],
        run_id=42,
    )

    text_hits = store.search_text("xylophonist")
    flat_hits = store.search_flat("xylophonist", k=5)

    assert [h.text for h in text_hits] == ["the xylophonist arrived late"]
    assert text_hits[0].parent_id == target.id and text_hits[0].run_id == 42
    assert flat_hits[0].text == "the xylophonist arrived late"
    assert flat_hits[0].text_score is not None
    assert filler  # the keyword is rare among many rows

    # Still found once the rows are folded into the index, and new rows written
    # after the index build are found too.
    store.ensure_indexes()
    late = store.add_memory(summary="a later note", chunks=[{"text": "a second xylophonist joined"}])
    found = {h.text for h in store.search_text("xylophonist")}
    assert found == {"the xylophonist arrived late", "a second xylophonist joined"}
    assert store.stats()["full_text"]["chunks"]["unindexed_rows"] == 1
    assert late.chunks[0].text in found


def test_delete_removes_summary_and_chunks(store, topics):
    astro, music = topics["astronomy"], topics["music"]
    memories, chunks = store.count(), store.count(level=CHUNK_LEVEL)

    removed = store.delete_memory(astro.id)

    assert removed == len(astro.chunks)
    assert store.count() == memories - 1
    assert store.count(level=CHUNK_LEVEL) == chunks - len(astro.chunks)
    with pytest.raises(ValueError, match="unknown memory id"):
        store.get_memory(astro.id)
    assert astro.id not in {h.parent_id for h in store.search_flat("telescope nebula galaxies", k=20)}
    assert astro.id not in {h.id for h in store.search_flat("telescope nebula galaxies", k=20)}
    assert astro.id not in {r.id for r in store.list_summaries(0, 50)}
    assert len(store.get_memory(music.id).chunks) == len(music.chunks)
    with pytest.raises(ValueError, match="unknown memory id"):
        store.delete_memory(astro.id)


def test_browse_lists_newest_first_and_gets_chunks_in_order(store, topics):
    page1 = store.list_summaries(0, 2)
    page2 = store.list_summaries(2, 10)

    assert [r.id for r in page1] == [topics["music"].id, topics["finance"].id]
    assert [r.id for r in page1 + page2] == [r.id for r in reversed(list(topics.values()))]
    assert page1[0].chunk_count == 2 and page1[0].chunks == []
    memory = store.get_memory(topics["pasta"].id)
    assert [c.text for c in memory.chunks] == TOPICS["pasta"][1]
    assert [c.persona for c in memory.chunks] == ["BRICK", "ROBIN", "BABS"]
    assert memory.metadata == {"topic": "pasta"}
    assert memory.step_ids == [200, 201, 202]
    assert memory.chunks[1].step_ids == [201]
    assert store.count() == 5
    assert store.count(level=SUMMARY_LEVEL) == 5
    assert store.count(level=CHUNK_LEVEL) == sum(len(c) for _, c in TOPICS.values())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"summary": "   ", "chunks": []}, "summary is empty"),
        ({"summary": "ok", "chunks": [{"text": ""}]}, "chunk 0 text is empty"),
        ({"summary": "ok", "chunks": [{"persona": "BRICK"}]}, "chunk 0 text must be a string"),
        ({"summary": "ok", "chunks": [{"text": "x", "stepid": 3}]}, "unknown field"),
        ({"summary": "ok", "chunks": [{"text": "x", "step_id": "3"}]}, "integer step ids"),
        ({"summary": "ok", "chunks": [], "run_id": "7"}, "run_id must be an int"),
        ({"summary": "ok", "chunks": [], "metadata": {"x": object()}}, "not JSON-serialisable"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(store, kwargs, message):
    with pytest.raises(ValueError, match=message):
        store.add_memory(**kwargs)
    assert store.count() == 0
    assert store.count(level=CHUNK_LEVEL) == 0


def test_wrong_vector_dimensions_are_refused(tmp_path, store, topics):
    bad_store = MemoryStore(str(tmp_path / "bad"), embed=lambda texts: np.ones((len(texts), DIM + 1)), dim=DIM)
    with pytest.raises(ValueError, match=r"embedder output has shape \(2, 65\), expected \(2, 64\)"):
        bad_store.add_memory(summary="s", chunks=[{"text": "c"}])
    assert bad_store.count() == 0
    with pytest.raises(ValueError, match="query vector has shape"):
        store.search_flat_vector(np.ones(DIM - 1))
    with pytest.raises(ValueError, match="holds 64-dim vectors"):
        MemoryStore(store.uri, embed=HashingEmbedder(32), dim=32)
    with pytest.raises(ValueError, match="query is empty"):
        store.search_hierarchical("  ")
    with pytest.raises(ValueError, match="unknown memory id"):
        store.get_memory("not-a-uuid' OR 1=1 --")


def test_a_second_handle_sees_writes_immediately(store, embedder, topics):
    other = MemoryStore(store.uri, embed=embedder, dim=DIM)
    # The other handle (the web process, say) has searched, so it holds the
    # summaries of this version in memory.
    assert other.search_hierarchical("kumquat orchard harvest", k=3)
    added = store.add_memory(
        summary="kumquat orchard harvest notes", chunks=[{"text": "kumquat"}, {"text": "the orchard ladder"}]
    )

    assert other.get_memory(added.id).chunks[0].text == "kumquat"
    assert [h.text for h in other.search_text("kumquat", level=CHUNK_LEVEL)] == ["kumquat"]
    hits = other.search_hierarchical("kumquat orchard harvest", k=3, summaries_k=1)
    assert {h.parent_id for h in hits} == {added.id}
    assert hits[0].text == "kumquat"
    assert (hits[0].run_id, hits[0].created_at) == (added.run_id, added.created_at)

    store.delete_memory(added.id)
    assert added.id not in {h.parent_id for h in other.search_hierarchical("kumquat orchard harvest", k=10)}
    other.close()


def test_hierarchical_text_hits_survive_compaction_of_the_summaries(store, embedder, topics):
    """Full-text hits are joined to the in-memory summaries by row id; compaction renumbers rows."""
    reader = MemoryStore(store.uri, embed=embedder, dim=DIM)
    before = reader.search_hierarchical("quarterly finance invoices taxes", k=3, summaries_k=1)
    assert before[0].parent_id == topics["finance"].id
    for i in range(20):  # many small fragments, then compact them into one
        store.add_memory(summary=f"filler memory number {i}", chunks=[{"text": f"filler chunk {i}"}])
    store.ensure_indexes()
    assert store.stats()["full_text"]["summaries"]["unindexed_rows"] == 0

    # Only the text side can find this one: the query vector is far from it.
    after = reader.search_hierarchical_vector(
        embedder(["piano scales violin"])[0], k=3, summaries_k=2, query_text="invoices taxes budget"
    )
    assert topics["finance"].id in {h.parent_id for h in after}
    finance = next(h for h in after if h.parent_id == topics["finance"].id)
    assert finance.parent_text == TOPICS["finance"][0]
    reader.close()


def _ranked(hits):
    return [(h.id, h.parent_id, round(h.score, 9), h.distance and round(h.distance, 6), h.text_score) for h in hits]


def test_in_memory_copies_follow_appends_deletes_compaction_and_restores(store, embedder, topics, monkeypatch):
    """A long-lived reader answers like a handle opened just now, after every kind of change."""
    import memory.reads

    reader = MemoryStore(store.uri, embed=embedder, dim=DIM)
    queries = ["telescope galaxies astronomy nebula", "kumquat orchard ladder", "piano violin budget"]

    def same_as_fresh() -> None:
        fresh = MemoryStore(store.uri, embed=embedder, dim=DIM)
        for q in queries:
            for summaries_k in (1, 3):
                assert _ranked(reader.search_hierarchical(q, k=6, summaries_k=summaries_k)) == _ranked(
                    fresh.search_hierarchical(q, k=6, summaries_k=summaries_k)
                ), (q, summaries_k)
        fresh.close()

    same_as_fresh()
    reads = []
    one = memory.reads.DirectReads._one
    monkeypatch.setattr(memory.reads.DirectReads, "_one", staticmethod(lambda ds, r: reads.append(r) or one(ds, r)))
    before = store.table_versions()
    added = store.add_memory(
        summary="kumquat orchard harvest notes", chunks=[{"text": "kumquat"}, {"text": "the orchard ladder"}]
    )
    assert [h.parent_id for h in reader.search_hierarchical("kumquat orchard", k=1, summaries_k=1)] == [added.id]
    # The reader only read the rows the new memory appended to each table.
    assert {r.table for r in reads if r.fragment_ids is not None} == {"summaries", "chunks"}
    assert not [r for r in reads if r.text is None and r.positions is None and r.fragment_ids is None]
    monkeypatch.undo()
    same_as_fresh()

    store.delete_memory(topics["astronomy"].id)
    same_as_fresh()
    for i in range(12):
        store.add_memory(summary=f"filler memory {i}", chunks=[{"text": f"filler chunk {i}"}, {"text": "ladder"}])
    store.ensure_indexes()  # compacts the fragments: every row moves
    same_as_fresh()
    store.restore_versions(before)
    same_as_fresh()
    assert topics["astronomy"].id in {h.parent_id for h in reader.search_hierarchical(queries[0], k=3)}
    reader.close()


def test_a_memory_without_chunks_contributes_no_hits(store, topics):
    bare = store.add_memory(summary="axolotl aquarium maintenance log", chunks=[])

    assert store.search_hierarchical("axolotl aquarium", k=5, summaries_k=1) == []
    hits = store.search_hierarchical("axolotl aquarium telescope", k=5, summaries_k=2)
    assert hits and bare.id not in {h.parent_id for h in hits}


def test_stage_two_falls_back_to_a_ranked_read_for_very_large_memories(store, topics, monkeypatch):
    query = "telescope galaxies astronomy nebula"
    expected = [(h.id, round(h.score, 9)) for h in store.search_hierarchical(query, k=5, summaries_k=2)]
    monkeypatch.setattr("memory.store._STAGE2_MAX_ROWS", 2)

    hits = store.search_hierarchical(query, k=5, summaries_k=2)

    assert [(h.id, round(h.score, 9)) for h in hits] == expected
    assert all(h.run_id is not None and h.step_ids for h in hits)


def test_restore_versions_rolls_back_and_accepts_new_writes(store, topics):
    before = store.table_versions()
    late = store.add_memory(summary="written after the snapshot", chunks=[{"text": "a quokka in the archive"}])
    assert store.search_text("quokka")

    after = store.restore_versions(before)

    assert all(after[t] > before[t] for t in before), "restore commits a new version, keeping history"
    assert store.count() == len(TOPICS)
    with pytest.raises(ValueError, match="unknown memory id"):
        store.get_memory(late.id)
    assert store.search_text("quokka") == []
    assert store.get_memory(topics["astronomy"].id).summary == TOPICS["astronomy"][0]

    again = store.add_memory(summary="written after the restore", chunks=[{"text": "a wombat appears"}])
    assert store.get_memory(again.id).chunks[0].text == "a wombat appears"
    assert [h.text for h in store.search_text("wombat")] == ["a wombat appears"]
    assert store.count() == len(TOPICS) + 1


def test_restore_to_the_empty_table_keeps_full_text_working(store, topics):
    store.restore_versions({"summaries": 1, "chunks": 1})

    assert store.count() == 0
    added = store.add_memory(summary="fresh start", chunks=[{"text": "a narwhal"}])
    assert [h.parent_id for h in store.search_text("narwhal")] == [added.id]


def test_restore_refuses_unknown_versions_without_changing_anything(store, topics):
    versions = store.table_versions()
    with pytest.raises(ValueError, match="has no version"):
        store.restore_versions({"summaries": versions["summaries"], "chunks": 10_000})
    with pytest.raises(ValueError, match="must map exactly"):
        store.restore_versions({"summaries": 1})
    assert store.table_versions() == versions
    assert store.count() == len(TOPICS)


def test_a_failed_search_leaves_the_store_searchable(store, topics, monkeypatch):
    """A read that fails (here: the stage-1 ranking) surfaces its error; the next search works."""
    query = "telescope galaxies astronomy nebula"
    expected = [h.id for h in store.search_hierarchical(query, k=3)]

    def broken(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr("memory.store._Summaries.nearest", broken)
    monkeypatch.setattr("memory.reads.AsyncReads.run", broken)
    with pytest.raises(OSError, match="disk went away"):
        store.search_hierarchical(query, k=3)
    monkeypatch.undo()

    assert [h.id for h in store.search_hierarchical(query, k=3)] == expected


def test_searches_leave_numpys_thread_setting_as_they_found_it(store, topics):
    """The in-memory ranking runs on one BLAS thread and hands the process its setting back."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        assert store.search_hierarchical("piano scales astronomy", k=3)
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {2}
