"""Two web and two worker processes on PostgreSQL and a password-protected TCP valkey, each with its own
var/: runs and forge requests sent to both web processes finish once, a SIGKILLed worker's run is taken
over by the other without a lost or doubled step, websocket clients on both web processes see every
step, and the periodic jobs run once per period.

As root the test command installs Debian's postgresql; elsewhere this skips with the reason.
"""
from __future__ import annotations

import time

import pytest

from tests.engines import postgres_missing, valkey_missing
from tests.scaleout import Deployment, SocketWatcher, deploy, login_cookie, periodic_copies, periodic_runs

MISSING = postgres_missing() or valkey_missing()
pytestmark = [pytest.mark.stack, pytest.mark.skipif(bool(MISSING), reason=MISSING or "engines are here")]

RUNS_PER_WEB = 2


def _wait(predicate, what: str, deployment: Deployment, timeout: float = 240, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    logs = "\n".join(f"--- {p.name}\n{p.log()[-2500:]}" for p in [*deployment.webs, *deployment.workers])
    sessions = deployment.sql("SELECT pid, state, wait_event_type, wait_event, left(query, 100) "
                              "FROM pg_stat_activity WHERE datname = 'a4ps'")
    runs = deployment.sql("SELECT id, status, worker, last_seq, lease_until FROM personas_run ORDER BY id")
    raise AssertionError(f"timed out waiting for {what}\nruns: {runs}\nsessions: {sessions}\n{logs}")


@pytest.fixture(scope="module")
def deployment():
    d = deploy(lease_s=8)
    try:
        for name in ("web-a", "web-b"):
            d.start_web(name)
        for web in d.webs:
            d.wait_running(web)
        for name in ("worker-1", "worker-2"):
            d.start_worker(name, delay_s=0.4)
        for worker in d.workers:
            d.wait_running(worker, marker="Huey consumer started")
        d.token = d.manage("create_api_token", "stackadmin", "scale-test").strip().splitlines()[-1]
        yield d
    finally:
        d.stop()


def test_two_web_and_two_worker_processes_finish_every_job_once(deployment):
    d = deployment
    web_a, web_b = d.webs
    # One secret key from the shared dir: a session made on web A is good on web B.
    cookie = login_cookie(web_a)
    # The system log on web A, open before anything is submitted.
    events_a = SocketWatcher(web_a, cookie, path="/ws/events/")
    events_a.start()
    assert events_a.connected.wait(30) and not events_a.error, events_a.error

    run_ids: list[int] = []
    for web in (web_a, web_b):
        for i in range(RUNS_PER_WEB):
            run_ids.append(d.api(web, "/api/runs/", {"task": f"What is 2 + 2? (asked on {web.name}, #{i})"})["id"])
    forge_ids = [d.api(web, "/api/forge/", {"spec": "add two integers and return the sum"})["id"]
                 for web in (web_a, web_b)]
    watchers = [SocketWatcher(web, cookie, run_id) for run_id in run_ids for web in (web_a, web_b)]
    for watcher in watchers:
        watcher.start()
    for watcher in watchers:
        assert watcher.connected.wait(30) and not watcher.error, watcher.error

    # Both workers take runs at once (one per node), and one is killed in the middle of a step.
    holders = _wait(lambda: d.sql("SELECT id, worker FROM personas_run WHERE status = 'running' AND last_seq >= 3"),
                    "a run three steps in", d)
    victim_run, victim_worker = int(holders[0][0]), holders[0][1]
    victim = next(w for w in d.workers if victim_worker.startswith(f"{w.name}:"))
    d.kill(victim)
    killed_at_seq = int(d.sql(f"SELECT last_seq FROM personas_run WHERE id = {victim_run}")[0][0])

    ids = ",".join(map(str, run_ids))
    _wait(lambda: d.sql(f"SELECT count(*) FROM personas_run WHERE id IN ({ids}) AND status = 'done'")[0][0]
          == str(len(run_ids)), "every run to finish", d)
    forge = ",".join(map(str, forge_ids))
    _wait(lambda: d.sql(f"SELECT count(*) FROM forge_forgerequest WHERE id IN ({forge}) "
                        "AND status IN ('succeeded', 'failed')")[0][0] == str(len(forge_ids)),
          "both forge requests to finish", d)

    # The killed run was taken over by the surviving worker, resumed past where it stopped.
    survivor = next(w for w in d.workers if w is not victim)
    worker, attempts = d.sql(f"SELECT worker, attempts FROM personas_run WHERE id = {victim_run}")[0]
    assert worker.startswith(f"{survivor.name}:") and int(attempts) == 2
    assert killed_at_seq >= 3

    # Every run finished once, with an answer; its steps are numbered 1..n without a gap or a repeat, and
    # so are the graph's own step keys ("001-alfred_route", "002-…"): the resumed run lost and doubled nothing.
    for run_id in run_ids:
        rows = d.sql(f"SELECT seq, key FROM personas_runstep WHERE run_id = {run_id} ORDER BY seq")
        seqs, keys = [int(r[0]) for r in rows], [r[1] for r in rows]
        assert seqs == list(range(1, len(seqs) + 1)) and len(set(keys)) == len(keys), (run_id, rows)
        numbers = [int(key.split("-", 1)[0]) for key in keys if "." not in key]
        assert numbers == list(range(1, len(numbers) + 1)), (run_id, keys)
        assert d.sql(f"SELECT final_answer <> '' FROM personas_run WHERE id = {run_id}") == [["t"]]
        finished = d.sql(f"SELECT count(*) FROM personas_event WHERE kind = 'run.done' "
                         f"AND (payload->>'run')::int = {run_id}")[0][0]
        assert finished == "1", (run_id, finished)

    # Forge requests: each succeeded once with its own tool version; attempts are numbered without repeats.
    rows = d.sql(f"SELECT id, status, tool_version_id FROM forge_forgerequest WHERE id IN ({forge}) ORDER BY id")
    assert [r[1] for r in rows] == ["succeeded", "succeeded"] and len({r[2] for r in rows}) == 2, rows
    for request_id in forge_ids:
        numbers = [int(r[0]) for r in d.sql(f"SELECT number FROM forge_forgeattempt WHERE request_id = {request_id}")]
        assert len(numbers) == len(set(numbers)) and numbers, (request_id, numbers)

    # Websocket clients on both web processes saw every step of every run, whoever produced it.
    time.sleep(1.0)  # the last step's message is in flight after its commit
    for watcher in watchers:
        watcher.stop()
        expected = {int(r[0]) for r in d.sql(f"SELECT seq FROM personas_runstep WHERE run_id = {watcher.run_id}")}
        assert not watcher.error, watcher.error
        assert watcher.seqs == expected, (watcher.web.name, watcher.run_id, sorted(expected - watcher.seqs))
    # ... and most of them live, not only replayed from the database on connecting.
    assert sum(len(w.live) for w in watchers) >= sum(len(w.seqs) for w in watchers) // 2
    # Web A's system log showed the events web B published (runs queued there) and the workers' (runs done).
    events_a.stop()
    log_a = "\n".join(events_a.messages)
    for run_id in run_ids[RUNS_PER_WEB:]:  # the runs submitted on web B
        assert f"Run #{run_id} queued" in log_a, run_id
    for run_id in run_ids:
        assert f"Run #{run_id} finished" in log_a, run_id

    # Periodic jobs: the killed worker comes back (as its supervisor would restart it). Each consumer's
    # scheduler enqueues its own copy of every periodic job; in a period where two copies were executed,
    # exactly one ran the job and the other found it done.
    d.workers.remove(victim)
    back = d.start_worker(victim.name, delay_s=0.4)
    d.wait_running(back, marker="Huey consumer started")

    def doubly_fired() -> list[int]:
        copies = periodic_copies([w.log() for w in d.workers], "motivator_tick")
        return [period for period, n in copies.items() if n >= 2]

    periods = _wait(doubly_fired, "a period in which two copies of the job were executed", d, timeout=150, every=1.0)
    found = periodic_runs([w.log() for w in d.workers])
    for period in periods:
        assert len(found.get(("motivator_tick", period), [])) == 1, found
    doubled = {key: workers for key, workers in found.items() if len(workers) > 1}
    assert not doubled, doubled


def test_a_worker_role_waits_for_the_migrations_then_consumes_and_stops_cleanly():
    """`up --role worker` on a fresh database: it waits (a worker never migrates), starts its consumer once
    a web process or `migrate` has migrated, opens no port, and stops on SIGTERM."""
    import signal
    import sys

    d = deploy()
    try:
        worker = d._spawn("worker-real", [sys.executable, "manage.py", "up", "--role", "worker"])
        d.workers.append(worker)
        d.wait_running(worker, marker="the database has migrations to apply", timeout=120)
        assert d.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'personas_run'") == [["0"]]
        d.manage("migrate", "--no-input")
        d.wait_running(worker, marker="A4PS worker worker-real is running", timeout=120)
        d.wait_running(worker, marker="Huey consumer started", timeout=120)
        log = worker.log()
        assert "starting daphne" not in log and "embedded broker" not in log and d.valkey.password not in log
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(timeout=60) == 0
        assert "stopped" in worker.log()
    finally:
        d.stop()
