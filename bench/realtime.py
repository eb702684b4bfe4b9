"""Realtime delivery: N websocket clients on a running daphne with the real broker, events
published from another process. Prints p50/p95/max delivery latency and lost messages.

    .venv/bin/python bench/realtime.py [--clients 100] [--events 200]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websockets  # noqa: E402

from tests.livestack import ROOT, cleanup, start_stack  # noqa: E402

SEQ = re.compile(r'data-seq="(\d+)"')
TAG = re.compile(r"bench (\d+) ([0-9.]+)")

PUBLISHER = """
import sys, time
from personas.events import event_publish
n, gap = int(sys.argv[1]), float(sys.argv[2])
for i in range(n):
    event_publish(kind="bench.tick", source="bench", payload={"message": f"bench {i} {time.time():.6f}"})
    time.sleep(gap)
"""


async def client(url: str, cookie: str, origin: str, expected: int, latencies: list, ready: asyncio.Event,
                 counter: list, deadline: float) -> int:
    got = 0
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}) as ws:
        counter[0] += 1
        if counter[0] >= counter[1]:
            ready.set()
        while got < expected and time.time() < deadline:
            try:
                msg = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.time()))
            except TimeoutError:
                break
            now = time.time()
            m = TAG.search(msg)
            if m:
                latencies.append((now - float(m.group(2))) * 1000)
                got += 1
    return got


async def run(stack, clients: int, events: int, gap: float) -> dict:
    cookie = stack.login_cookie()
    url = f"ws://127.0.0.1:{stack.port}/ws/events/"
    latencies: list[float] = []
    ready = asyncio.Event()
    counter = [0, clients]
    deadline = time.time() + 60 + events * gap * 3
    tasks = [
        asyncio.create_task(client(url, cookie, stack.url, events, latencies, ready, counter, deadline))
        for _ in range(clients)
    ]
    await asyncio.wait_for(ready.wait(), timeout=60)
    await asyncio.sleep(0.5)
    pub = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "shell", "-c", PUBLISHER.replace("sys.argv[1]", str(events)).replace(
            "sys.argv[2]", str(gap)),
        cwd=ROOT, env=stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    _, err = await pub.communicate()
    if pub.returncode:
        raise SystemExit(err.decode())
    received = await asyncio.gather(*tasks)
    lost = clients * events - sum(received)
    lat = sorted(latencies)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")  # noqa: E731
    return {
        "clients": clients, "events": events, "delivered": sum(received), "lost": lost,
        "p50_ms": round(statistics.median(lat), 2) if lat else None,
        "p95_ms": round(pct(0.95), 2), "max_ms": round(lat[-1], 2) if lat else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--gap", type=float, default=0.1, help="seconds between published events (0.1 = 10 events/s)")
    args = ap.parse_args()
    stack = start_stack()
    try:
        result = asyncio.run(run(stack, args.clients, args.events, args.gap))
    finally:
        cleanup(stack)
    print(f"{'clients':>8} {'events':>7} {'delivered':>10} {'lost':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    print(f"{result['clients']:>8} {result['events']:>7} {result['delivered']:>10} {result['lost']:>5} "
          f"{result['p50_ms']:>8} {result['p95_ms']:>8} {result['max_ms']:>8}")
    print("target: 0 lost, p95 < 100 ms")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
