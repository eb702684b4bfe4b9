"""Per-run overhead of print(1) in each available sandbox backend next to a bare subprocess: cold, and
warm (from the backend's warm pool: a container, or a launched runner in its own uid, scratch and
cgroup, started ahead of need; the bench waits until the pool is full before each timed run, so the
figure is the job's own cost, not the refill's)."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from forge.sandbox import ORDER, Limits, get_backend  # after the path above


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _measure(fn: Callable[[], None], runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30, help="runs per local backend")
    parser.add_argument("--docker-runs", type=int, default=15, help="cold runs per docker backend")
    parser.add_argument("--warm-runs", type=int, default=15,
                        help="runs per backend from its warm pool (0: none)")
    args = parser.parse_args()

    def bare() -> None:
        out = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, check=True)
        assert out.stdout == b"1\n"

    rows: dict[str, dict] = {}
    base = _measure(bare, args.runs)
    rows["subprocess"] = {"p50_ms": _percentile(base, 0.5), "p95_ms": _percentile(base, 0.95),
                          "runs": len(base), "status": "reference"}
    for name in ORDER:
        backend = get_backend(name)
        status = backend.status()
        if not status.available:
            rows[name] = {"status": f"unavailable: {status.reason}"}
            continue

        def once(backend=backend) -> None:
            result = backend.run("print(1)")
            assert result.ok and result.stdout == "1\n", result

        samples = _measure(once, args.docker_runs if name.startswith("docker") else args.runs)
        rows[name] = {"p50_ms": _percentile(samples, 0.5), "p95_ms": _percentile(samples, 0.95),
                      "mean_ms": statistics.fmean(samples), "runs": len(samples), "status": "ok"}
        if args.warm_runs:
            limits = Limits()
            backend.warm(2, limits)
            pool = backend._pool
            assert pool is not None

            def warm_once(backend=backend, pool=pool, limits=limits) -> None:
                result = backend.run("print(1)", limits=limits)
                assert result.ok and result.warm and result.stdout == "1\n", result

            warm_samples = []
            for _ in range(args.warm_runs):
                if not pool.wait_ready(120):
                    raise SystemExit(f"{name}: the warm pool did not fill: {pool.status()}")
                warm_samples += _measure(warm_once, 1, warmup=0)
            backend.warm(0, limits)
            rows[f"{name} warm"] = {"p50_ms": _percentile(warm_samples, 0.5),
                                    "p95_ms": _percentile(warm_samples, 0.95),
                                    "mean_ms": statistics.fmean(warm_samples), "runs": len(warm_samples),
                                    "status": "ok"}

    ref = rows["subprocess"]["p50_ms"]
    print(f"{'backend':18} {'p50 ms':>9} {'p95 ms':>9} {'x bare p50':>11} {'runs':>5}")
    for name, row in rows.items():
        if "p50_ms" not in row:
            print(f"{name:18} {row['status']}")
            continue
        row["ratio_p50"] = row["p50_ms"] / ref
        print(f"{name:18} {row['p50_ms']:9.1f} {row['p95_ms']:9.1f} {row['ratio_p50']:11.2f} {row['runs']:5d}")
    result = {name: {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}
              for name, row in rows.items()}
    print("RESULT " + json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
