"""Benchmark the LanceDB memory store: ingest rate, hierarchical/flat latency, recall@10 vs exact numpy.

    python bench/memory.py [--rows 10000 100000] [--sweep]
    python bench/memory.py --documents [--pages 200]

--documents measures the document library instead, with the real all-MiniLM-L6-v2 embeddings: ingest rate
(pages/s and chunks/s: PDF parse, structure-aware split, embedding, write) on a generated corpus of text
PDFs, and recall@5 of the chunk that holds the answer for the `documents` tasks of the evals suite, searched
among every document the suite ships, as BABS searches them, and how often the line the graph's prompts
quote as speaking to the task (personas.graph.prompts.key_lines_block) holds the answer's evidence."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory.store import MemoryStore  # noqa: E402

DIM = 384  # all-MiniLM-L6-v2
CHUNKS_PER_MEMORY = 10
TOPICS = 200
VOCAB = [f"w{i}" for i in range(5000)]


class Corpus:
    """Synthetic memories shaped like sentence embeddings: topic > memory > chunk.

    Each memory sits near one of TOPICS topic directions, its chunks scatter
    around the memory and its summary sits close to the memory's centre. A query
    is a fresh sample around some memory, i.e. a new sentence about something
    already remembered. Texts carry the topic word and a few vocabulary words so
    full-text search has something to match.
    """

    def __init__(self, rows: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.n_mem = rows // CHUNKS_PER_MEMORY
        topics = _unit(rng.standard_normal((TOPICS, DIM)).astype(np.float32))
        self.mem_topic = rng.integers(0, TOPICS, self.n_mem)
        self.centres = _unit(topics[self.mem_topic] + 0.7 * _noise(rng, self.n_mem))
        self.summary_vecs = _unit(self.centres + 0.3 * _noise(rng, self.n_mem))
        parents = np.repeat(np.arange(self.n_mem), CHUNKS_PER_MEMORY)
        self.chunk_parent = parents
        self.chunk_vecs = _unit(self.centres[parents] + 0.8 * _noise(rng, len(parents)))
        self.vectors: dict[str, np.ndarray] = {}
        self.memories: list[dict[str, Any]] = []
        for m in range(self.n_mem):
            words = " ".join(rng.choice(VOCAB, 3))
            summary = f"memory m{m} about topic{self.mem_topic[m]} {words}"
            self.vectors[summary] = self.summary_vecs[m]
            chunks = []
            for c in range(CHUNKS_PER_MEMORY):
                j = m * CHUNKS_PER_MEMORY + c
                text = f"chunk c{j} of m{m} topic{self.mem_topic[m]} {' '.join(rng.choice(VOCAB, 4))}"
                self.vectors[text] = self.chunk_vecs[j]
                chunks.append({"text": text, "persona": "BRICK" if c % 2 else "ROBIN", "step_id": j})
            self.memories.append({"summary": summary, "chunks": chunks, "run_id": m})

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])

    def queries(self, n: int) -> list[tuple[np.ndarray, str, int]]:
        out = []
        for m in self.rng.integers(0, self.n_mem, n):
            vec = _unit(self.centres[m] + 0.8 * _noise(self.rng, 1))[0]
            out.append((vec, f"topic{self.mem_topic[m]} m{m}", int(m)))
        return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    # Scaled so the noise vector has norm ~1 whatever DIM is.
    return rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)


_CPU_MS: dict[int, list[float]] = {}


def _timed(fn: Callable[[Any], Any], reps: list[Any]) -> tuple[list[float], list[Any]]:
    """Wall-clock ms per call; CPU ms (all threads) is kept in _CPU_MS under the same list's id."""
    times, cpu, results = [], [], []
    for item in reps:
        c0, t0 = time.process_time(), time.perf_counter()
        results.append(fn(item))
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    _CPU_MS[id(times)] = cpu
    return times, results


def _cpu50(times: list[float]) -> float:
    # CPU time is what a query costs whatever else the machine is doing; on a
    # busy shared box the wall clock mostly measures the neighbours.
    return float(np.percentile(_CPU_MS[id(times)], 50))


def _pct(times: list[float], p: float) -> float:
    return float(np.percentile(times, p))


def _recall(found: list[list[int]], truth: list[np.ndarray]) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def run_size(rows: int, n_queries: int, sweep: bool, workdir: str, exact_threshold: int) -> dict[str, Any]:
    corpus = Corpus(rows)
    uri = os.path.join(workdir, f"mem{rows}")
    shutil.rmtree(uri, ignore_errors=True)
    store = MemoryStore(uri, embed=corpus.embed, dim=DIM, exact_threshold=exact_threshold)
    res: dict[str, Any] = {"rows": rows, "memories": corpus.n_mem, "dim": DIM}

    # Single add_memory calls (what a graph run does): two commits each.
    single = corpus.memories[:100]
    t0 = time.perf_counter()
    for mem in single:
        store.add_memory(**mem)
    dt = time.perf_counter() - t0
    res["ingest_single_rows_per_s"] = len(single) * (CHUNKS_PER_MEMORY + 1) / dt
    res["ingest_single_ms_per_memory"] = dt / len(single) * 1000

    # Bulk (curator imports, re-embedding): batches of 1000 memories.
    t0 = time.perf_counter()
    rest = corpus.memories[len(single) :]
    for i in range(0, len(rest), 1000):
        store.add_memories(rest[i : i + 1000])
    dt = time.perf_counter() - t0
    res["ingest_bulk_rows_per_s"] = len(rest) * (CHUNKS_PER_MEMORY + 1) / dt

    t0 = time.perf_counter()
    report = store.ensure_indexes()
    res["ensure_indexes_s"] = time.perf_counter() - t0
    res["index_chunks"] = report.tables["chunks"].index_type
    res["index_summaries"] = report.tables["summaries"].index_type
    res["num_partitions"] = report.tables["chunks"].num_partitions
    res["nprobes"] = store.nprobes_for("chunks")
    res["refine_factor"] = store.refine_factor

    # Ids are assigned by the store; map them back to corpus positions.
    id_to_mem = {r.id: int(r.summary.split()[1][1:]) for r in store.list_summaries(0, corpus.n_mem)}
    queries = corpus.queries(n_queries + 20)
    warm, queries = queries[:20], queries[20:]
    for vec, text, _ in warm:
        store.search_hierarchical_vector(vec, query_text=text)
        store.search_flat_vector(vec, level=3)

    def chunk_index(hit: Any) -> int:
        return int(hit.text.split()[1][1:])

    # Exact references in numpy (cosine = dot on unit vectors).
    flat_truth = [np.argsort(-(corpus.chunk_vecs @ v))[:10] for v, _, _ in queries]
    hier_truth = []
    for v, _, _ in queries:
        top_mem = np.argsort(-(corpus.summary_vecs @ v))[:5]
        cand = np.concatenate([np.arange(m * CHUNKS_PER_MEMORY, (m + 1) * CHUNKS_PER_MEMORY) for m in top_mem])
        hier_truth.append(cand[np.argsort(-(corpus.chunk_vecs[cand] @ v))[:10]])

    t_np, _ = _timed(lambda q: np.argsort(-(corpus.chunk_vecs @ q[0]))[:10], queries)
    res["numpy_exact_p50_ms"] = statistics.median(t_np)

    t_hv, hv = _timed(lambda q: store.search_hierarchical_vector(q[0], k=10, summaries_k=5), queries)
    t_hh, hh = _timed(lambda q: store.search_hierarchical_vector(q[0], k=10, summaries_k=5, query_text=q[1]), queries)
    t_fv, fv = _timed(lambda q: store.search_flat_vector(q[0], k=10, level=3), queries)
    t_fe, fe = _timed(lambda q: store.search_flat_vector(q[0], k=10, level=3, exact=True), queries)
    t_fh, _ = _timed(lambda q: store.search_flat_vector(q[0], k=10), queries)

    res["hier_hybrid_cpu_p50_ms"] = _cpu50(t_hh)
    res["hier_vector_cpu_p50_ms"] = _cpu50(t_hv)
    res["flat_cpu_p50_ms"] = _cpu50(t_fv)
    res["numpy_exact_cpu_p50_ms"] = _cpu50(t_np)
    res["load_avg_1m"] = os.getloadavg()[0]
    res["hier_vector_p50_ms"], res["hier_vector_p95_ms"] = _pct(t_hv, 50), _pct(t_hv, 95)
    res["hier_hybrid_p50_ms"], res["hier_hybrid_p95_ms"] = _pct(t_hh, 50), _pct(t_hh, 95)
    res["flat_p50_ms"], res["flat_p95_ms"] = _pct(t_fv, 50), _pct(t_fv, 95)
    res["flat_exact_lance_p50_ms"], res["flat_exact_lance_p95_ms"] = _pct(t_fe, 50), _pct(t_fe, 95)
    res["flat_both_levels_p95_ms"] = _pct(t_fh, 95)
    res["recall_at_10_flat"] = _recall([[chunk_index(h) for h in hits] for hits in fv], flat_truth)
    res["recall_at_10_flat_exact_lance"] = _recall([[chunk_index(h) for h in hits] for hits in fe], flat_truth)
    res["recall_at_10_hier"] = _recall([[chunk_index(h) for h in hits] for hits in hv], hier_truth)
    # How often the memory the query was drawn from is the top hit's parent.
    res["hier_hybrid_top_parent_acc"] = float(
        np.mean([bool(hits) and id_to_mem[hits[0].parent_id] == q[2] for hits, q in zip(hh, queries)])
    )
    res["hier_over_numpy_p50"] = res["hier_hybrid_p50_ms"] / max(res["numpy_exact_p50_ms"], 1e-9)

    if sweep and res["index_chunks"] == "IVF_PQ":
        grid = []
        for nprobes in (4, 8, 12, 16):
            for refine in (5, 10, 20, 40):
                store._nprobes, store.refine_factor = nprobes, refine
                t, found = _timed(lambda q: store.search_flat_vector(q[0], k=10, level=3), queries)
                grid.append(
                    {
                        "nprobes": nprobes,
                        "refine_factor": refine,
                        "p50_ms": _pct(t, 50),
                        "p95_ms": _pct(t, 95),
                        "recall_at_10": _recall([[chunk_index(h) for h in hits] for hits in found], flat_truth),
                    }
                )
        res["sweep"] = grid
    store.close()
    return res


def _print_table(results: list[dict[str, Any]]) -> None:
    rows = [
        ("memories / chunk rows", lambda r: f"{r['memories']} / {r['rows']}"),
        (
            "chunk index (partitions, nprobes, refine)",
            lambda r: f"{r['index_chunks']} ({r['num_partitions']}, {r['nprobes']}, {r['refine_factor']})",
        ),
        ("summary index", lambda r: r["index_summaries"]),
        (
            "ingest add_memory rows/s (ms/memory)",
            lambda r: f"{r['ingest_single_rows_per_s']:.0f} ({r['ingest_single_ms_per_memory']:.1f})",
        ),
        ("ingest bulk rows/s", lambda r: f"{r['ingest_bulk_rows_per_s']:.0f}"),
        ("ensure_indexes s", lambda r: f"{r['ensure_indexes_s']:.1f}"),
        ("hierarchical hybrid p50/p95 ms", lambda r: f"{r['hier_hybrid_p50_ms']:.1f} / {r['hier_hybrid_p95_ms']:.1f}"),
        ("hierarchical vector p50/p95 ms", lambda r: f"{r['hier_vector_p50_ms']:.1f} / {r['hier_vector_p95_ms']:.1f}"),
        ("flat (chunks) p50/p95 ms", lambda r: f"{r['flat_p50_ms']:.1f} / {r['flat_p95_ms']:.1f}"),
        (
            "flat exact in LanceDB p50/p95 ms",
            lambda r: f"{r['flat_exact_lance_p50_ms']:.1f} / {r['flat_exact_lance_p95_ms']:.1f}",
        ),
        ("numpy exact p50 ms (reference)", lambda r: f"{r['numpy_exact_p50_ms']:.1f}"),
        (
            "CPU ms p50: hier hybrid / hier vec / flat / numpy",
            lambda r: f"{r['hier_hybrid_cpu_p50_ms']:.1f} / {r['hier_vector_cpu_p50_ms']:.1f} / "
            f"{r['flat_cpu_p50_ms']:.1f} / {r['numpy_exact_cpu_p50_ms']:.1f}",
        ),
        ("load average during run (2 cores)", lambda r: f"{r['load_avg_1m']:.1f}"),
        ("recall@10 flat vs numpy", lambda r: f"{r['recall_at_10_flat']:.3f}"),
        ("recall@10 hierarchical vs numpy 2-stage", lambda r: f"{r['recall_at_10_hier']:.3f}"),
        ("hybrid top hit from queried memory", lambda r: f"{r['hier_hybrid_top_parent_acc']:.3f}"),
        ("hierarchical / numpy-flat p50 ratio", lambda r: f"{r['hier_over_numpy_p50']:.1f}x"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}  " + "  ".join(f"{r['rows']:>22,}" for r in results))
    for name, fmt in rows:
        print(f"{name:{width}}  " + "  ".join(f"{fmt(r):>22}" for r in results))
    for r in results:
        if "sweep" in r:
            print(f"\nIVF_PQ sweep at {r['rows']:,} chunk rows (flat search, level 3):")
            print(f"{'nprobes':>8} {'refine':>7} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10}")
            for g in r["sweep"]:
                print(
                    f"{g['nprobes']:>8} {g['refine_factor']:>7} {g['p50_ms']:>8.1f} {g['p95_ms']:>8.1f} "
                    f"{g['recall_at_10']:>10.3f}"
                )


def _django(scratch: Path) -> None:
    """The product's settings in a scratch var/ and config/ (document settings come from the shipped config)."""
    repo = Path(__file__).resolve().parent.parent
    (scratch / "var").mkdir(parents=True, exist_ok=True)
    shutil.copytree(repo / "config", scratch / "config", dirs_exist_ok=True)
    os.environ.update({"A4PS_VAR_DIR": str(scratch / "var"), "A4PS_CONFIG_DIR": str(scratch / "config"),
                       "A4PS_HUEY_IMMEDIATE": "true", "A4PS_CHANNEL_LAYER": "memory",
                       "DJANGO_SETTINGS_MODULE": "a4ps_site.settings"})
    import django

    django.setup()


def _corpus_pdfs(pages: int, seed: int = 11) -> list[tuple[str, bytes]]:
    """Text PDFs of 10 pages each, every page a heading-less run of short paragraphs about a made-up place."""
    from tests.memory.docfiles import make_pdf

    rng = np.random.default_rng(seed)
    words = [w for w in "harbour ferry garden library station market bridge tower river valley council school "
             "museum clinic bakery workshop meadow orchard quarry lantern".split()]
    files = []
    for f in range(max(1, pages // 10)):
        doc_pages = []
        for _ in range(10):
            lines = []
            for _ in range(40):  # about 2,500 characters per page
                picked = " ".join(rng.choice(words, 6))
                lines.append(f"The {picked} opens at {int(rng.integers(6, 11))}:{int(rng.integers(0, 60)):02d} "
                             f"and holds {int(rng.integers(10, 999))} items.")
            doc_pages.append(lines)
        files.append((f"corpus-{f:03d}.pdf", make_pdf(doc_pages, title=f"Corpus file {f}")))
    return files


def run_documents(pages: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="a4ps-bench-docs-"))
    try:
        _django(scratch)
        from forge.evals.services import suite_documents
        from forge.evals.suites import load_tasks
        from memory.documents import parsing
        from memory.documents.library import document_library
        from memory.documents.services import document_settings, memory_entry
        from personas.inference.embeddings import MiniLMEmbedder

        embedder = MiniLMEmbedder()
        embedder.embed(["warm up"])
        from personas.llm import set_model_manager

        class _Embeddings:  # the library embeds through a ModelManager; only embeddings are needed here
            embedding_model = "all-MiniLM-L6-v2"

            def embed(self, texts: list[str]) -> np.ndarray:
                return embedder.embed(texts)

        set_model_manager(_Embeddings())  # type: ignore[arg-type]
        config = document_settings()
        store = MemoryStore(str(scratch / "store"), embed=embedder.embed, dim=DIM)
        files = _corpus_pdfs(pages)
        total_pages = total_chunks = 0
        t0 = time.perf_counter()
        for name, data in files:
            parsed = parsing.parse(name, data, max_pages=config["max_pages"])
            _, chunks = parsing.split(parsed, chunk_chars=config["chunk_chars"],
                                      overlap_chars=config["overlap_chars"])
            store.add_memories([memory_entry(parsed, chunks, name=name, document_id=None)])
            total_pages += parsed.pages or 0
            total_chunks += len(chunks)
        seconds = time.perf_counter() - t0
        # The suite's documents among the corpus too: the answer's chunk must beat 1,400 distractor chunks.
        from memory.documents.library import memory_entries
        from memory.services import search_store

        store.add_memories(memory_entries(suite_documents()))
        mixed = []
        for task in [t for t in load_tasks() if t.setup_documents]:
            hits = search_store(store, query=task.task, k=5)
            mixed.append(any(task.evidence in h["text"] for h in hits))
        store.close()

        library = document_library(suite_documents())
        tasks = [t for t in load_tasks() if t.setup_documents]
        from personas.graph.prompts import key_lines_block

        ranks, quoted = [], []
        for task in tasks:
            hits = library(task.task, 5)
            rank = next((i + 1 for i, h in enumerate(hits) if task.evidence in h["text"]), None)
            ranks.append(rank)
            # The line the graph's prompts quote as speaking to the task: does it hold the answer's evidence?
            quoted.append(task.evidence in key_lines_block({"task": task.task, "memories": hits}))
            print(f"  {task.id}  rank {rank if rank else '>5'}  key line {'holds' if quoted[-1] else 'misses'} "
                  f"the evidence  {task.task[:60]}", flush=True)
        found = sum(r is not None for r in ranks)
        return {"pages": total_pages, "files": len(files), "chunks": total_chunks, "seconds": round(seconds, 2),
                "pages_per_s": round(total_pages / seconds, 2), "chunks_per_s": round(total_chunks / seconds, 2),
                "recall_at_5": round(found / len(tasks), 3), "recall_at_1": round(ranks.count(1) / len(tasks), 3),
                "recall_at_5_among_corpus": round(sum(mixed) / len(mixed), 3),
                "key_line_holds_evidence": round(sum(quoted) / len(tasks), 3),
                "document_tasks": len(tasks), "library_documents": len(suite_documents()),
                "chunk_chars": config["chunk_chars"], "overlap_chars": config["overlap_chars"]}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", action="store_true", help="the document library instead (see above)")
    parser.add_argument("--pages", type=int, default=200, help="--documents: pages in the generated corpus")
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000], help="chunk rows per run")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sweep", action="store_true", help="sweep nprobes/refine_factor at IVF_PQ sizes")
    parser.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir)")
    parser.add_argument("--exact-threshold", type=int, default=50_000, help="MemoryStore exact_threshold")
    args = parser.parse_args()
    if args.documents:
        figures = run_documents(args.pages)
        print(f"\ningest: {figures['pages']} PDF pages in {figures['files']} files -> {figures['chunks']} chunks in "
              f"{figures['seconds']} s: {figures['pages_per_s']} pages/s, {figures['chunks_per_s']} chunks/s")
        print(f"recall@5 of the answer's chunk on {figures['document_tasks']} document tasks "
              f"(among {figures['library_documents']} documents): {figures['recall_at_5']}"
              f" (recall@1 {figures['recall_at_1']}); mixed into the corpus's {figures['chunks']} chunks: "
              f"{figures['recall_at_5_among_corpus']}")
        print(f"the quoted key line holds the answer's evidence: {figures['key_line_holds_evidence']}")
        print("RESULT " + json.dumps(figures))
        return
    workdir = args.dir or tempfile.mkdtemp(prefix="a4ps-bench-memory-")
    results = []
    try:
        for rows in args.rows:
            results.append(run_size(rows, args.queries, args.sweep, workdir, args.exact_threshold))
    finally:
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    _print_table(results)
    flat = {f"{k}@{r['rows']}": v for r in results for k, v in r.items() if k not in ("rows", "sweep")}
    flat["sizes"] = [r["rows"] for r in results]
    sweeps = {str(r["rows"]): r["sweep"] for r in results if "sweep" in r}
    if sweeps:
        flat["sweep"] = sweeps
    print("RESULT " + json.dumps(flat, default=float))


if __name__ == "__main__":
    main()
