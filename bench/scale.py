"""Scale-out: run pickup latency and steps delivered per second with 1 and 2 workers, each a node of
its own, on PostgreSQL and a password-protected TCP valkey (a private cluster and server started here),
one web process, the scripted model with no model time. Pickup is measured with a worker free (one run
at a time) and in a burst of runs submitted at once; steps are counted as a websocket client of each
run's page received them. Prints both and the ratio.

    .venv/bin/python bench/scale.py [--runs 8] [--workers 1,2]

Needs Debian's postgresql (the test command installs it as root).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.engines import postgres_missing, valkey_missing  # noqa: E402
from tests.scaleout import SocketWatcher, deploy, login_cookie  # noqa: E402


def measure(workers: int, runs: int) -> dict:
    d = deploy(lease_s=30)
    try:
        web = d.start_web("web-a")
        d.wait_running(web)
        for i in range(workers):
            d.start_worker(f"worker-{i + 1}", delay_s=0.0)
        for worker in d.workers:
            d.wait_running(worker, marker="Huey consumer started")
        d.token = d.manage("create_api_token", "stackadmin", "bench").strip().splitlines()[-1]
        cookie = login_cookie(web)
        # Warm each worker (imports, embeddings model, first queries) before the clock starts.
        warm = [d.api(web, "/api/runs/", {"task": f"Warm-up {i}: what is 1 + 1?"})["id"] for i in range(workers)]
        ids = ",".join(map(str, warm))
        _until(lambda: d.sql(f"SELECT count(*) FROM personas_run WHERE id IN ({ids}) AND status = 'done'")[0][0]
               == str(len(warm)), 300)

        # Pickup with a worker free: one run at a time, each waited for.
        idle = []
        for i in range(5):
            run_id = d.api(web, "/api/runs/", {"task": f"Alone {i}: what is 3 + 3?"})["id"]
            _until(lambda run_id=run_id: d.sql(f"SELECT status FROM personas_run WHERE id = {run_id}")[0][0] == "done",
                   120)
            idle.append(float(d.sql(f"SELECT extract(epoch FROM started - created) FROM personas_run "
                                    f"WHERE id = {run_id}")[0][0]))

        # A burst: every run at once; pickup now includes waiting for a free node.
        started = time.time()
        run_ids = [d.api(web, "/api/runs/", {"task": f"What is {i} + {i}?"})["id"] for i in range(runs)]
        watchers = [SocketWatcher(web, cookie, run_id) for run_id in run_ids]
        for watcher in watchers:
            watcher.start()
        ids = ",".join(map(str, run_ids))
        _until(lambda: d.sql(f"SELECT count(*) FROM personas_run WHERE id IN ({ids}) AND status = 'done'")[0][0]
               == str(runs), 900)
        elapsed = time.time() - started
        time.sleep(1.0)
        for watcher in watchers:
            watcher.stop()
        pickup = [float(r[0]) for r in d.sql(
            "SELECT extract(epoch FROM started - created) FROM personas_run "
            f"WHERE id IN ({ids}) ORDER BY id")]
        steps = int(d.sql(f"SELECT count(*) FROM personas_runstep WHERE run_id IN ({ids})")[0][0])
        delivered = sum(len(w.seqs) for w in watchers)
        nodes = {r[0].rsplit(":", 1)[0] for r in d.sql(f"SELECT worker FROM personas_run WHERE id IN ({ids})")}
        return {
            "workers": workers, "runs": runs, "seconds": round(elapsed, 1), "steps": steps,
            "delivered": delivered, "steps_per_s": round(delivered / elapsed, 2),
            "idle_pickup_p50_ms": round(1000 * statistics.median(idle)),
            "pickup_p50_s": round(statistics.median(pickup), 2), "pickup_max_s": round(max(pickup), 2),
            "nodes_used": len(nodes),
        }
    finally:
        d.stop()


def _until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError("the runs did not finish in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    missing = postgres_missing() or valkey_missing()
    if missing:
        print(f"cannot run: {missing}")
        return 2
    results = [measure(int(n), args.runs) for n in args.workers.split(",")]
    print(f"{'workers':>7} {'idle pickup p50':>15} | burst: {'runs':>4} {'seconds':>7} {'steps':>5} "
          f"{'delivered':>9} {'steps/s':>7} {'pickup p50':>10} {'pickup max':>10} {'nodes used':>10}")
    for r in results:
        print(f"{r['workers']:>7} {r['idle_pickup_p50_ms']:>13}ms |        {r['runs']:>4} {r['seconds']:>7} "
              f"{r['steps']:>5} {r['delivered']:>9} {r['steps_per_s']:>7} {r['pickup_p50_s']:>9}s "
              f"{r['pickup_max_s']:>9}s {r['nodes_used']:>10}")
    ratio = None
    if len(results) == 2 and results[0]["steps_per_s"]:
        ratio = round(results[1]["steps_per_s"] / results[0]["steps_per_s"], 2)
        print(f"ratio of steps/s, {results[1]['workers']} workers to {results[0]['workers']}: {ratio:.2f}")
    print("RESULT " + json.dumps({"results": results, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
