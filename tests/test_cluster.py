"""Several workers on one database and broker: exclusive claims, leases that let another worker take
over, periodic jobs once per period, and the roles of the run command."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from a4ps_site import broker, cluster
from a4ps_site.processes import process_start
from forge import services as forge_services
from forge.models import ForgeAttempt, ForgeRequest
from memory.finetunes.models import FineTuneJob
from memory.finetunes.services import finetunes_recover
from personas import runs
from personas.models import Run

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------------------ runs
def _queued(task: str) -> Run:
    """A queued run, without the wake-up that would execute it here (Huey runs tasks inline in tests)."""
    return Run.objects.create(task=task, status=Run.Status.QUEUED)


def test_each_node_runs_one_run_at_a_time_and_two_nodes_take_two_different_runs():
    first, second, third = (_queued(f"task {i}") for i in range(3))
    a = runs.run_claim_next(worker="node-a:101", lease_s=60)
    assert a is not None and a.pk == first.pk
    # Node a is busy: another of its workers gets nothing, node b gets the next run.
    assert runs.run_claim_next(worker="node-a:102", lease_s=60) is None
    b = runs.run_claim_next(worker="node-b:201", lease_s=60)
    assert b is not None and b.pk == second.pk
    assert Run.objects.get(pk=third.pk).status == Run.Status.QUEUED


def test_a_run_whose_lease_ran_out_is_taken_over_by_another_node_and_says_so():
    run = _queued("t")
    runs.run_claim_next(worker="node-a:101", lease_s=60)
    Run.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    taken = runs.run_claim_next(worker="node-b:201", lease_s=60)
    assert taken is not None and taken.pk == run.pk and taken.worker == "node-b:201" and taken.attempts == 2
    from personas.models import Event

    resumed = Event.objects.filter(kind="run.resumed").latest("id")
    assert "taken over from node-a:101" in resumed.payload["message"]


def test_concurrent_claims_never_hand_one_run_to_two_workers():
    from django.db import connection

    if connection.vendor != "postgresql":  # runs in the suite's PostgreSQL pass (tests/test_postgres.py)
        pytest.skip("SQLite's shared in-memory test database locks whole tables across threads")
    for i in range(6):
        _queued(f"task {i}")
    claimed: list[int] = []
    errors: list[BaseException] = []

    def claim(node: str) -> None:
        from django.db import connection

        try:
            got = runs.run_claim_next(worker=f"{node}:1", lease_s=60)
            if got is not None:
                claimed.append(got.pk)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(f"node-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(claimed) == len(set(claimed)) == 6
    assert Run.objects.filter(status=Run.Status.RUNNING).values("worker").distinct().count() == 6


# --------------------------------------------------------------------------------- forge requests
def _running_request(worker: str, lease_s: float) -> ForgeRequest:
    request = ForgeRequest.objects.create(
        spec="add_two_integers(a, b) returns a + b", status=ForgeRequest.Status.RUNNING, worker=worker,
        lease_until=timezone.now() + timedelta(seconds=lease_s))
    ForgeAttempt.objects.create(request=request, number=1, code="def half(", passed=False)
    return request


def test_a_forge_request_held_by_a_live_worker_elsewhere_is_left_alone():
    held = _running_request("node-b:201", 60)
    requeued: list[int] = []
    assert forge_services.forge_requests_recover(requeue=requeued.append) == {"requeued": 0, "failed": 0}
    held.refresh_from_db()
    assert held.status == ForgeRequest.Status.RUNNING and held.attempts.count() == 1 and requeued == []


def test_a_forge_request_whose_lease_ran_out_is_queued_again_once():
    stale = _running_request("node-b:201", -1)
    requeued: list[int] = []
    assert forge_services.forge_requests_recover(requeue=requeued.append)["requeued"] == 1
    assert forge_services.forge_requests_recover(requeue=requeued.append)["requeued"] == 0  # not twice
    stale.refresh_from_db()
    assert requeued == [stale.pk] and stale.status == ForgeRequest.Status.QUEUED and stale.worker == ""
    assert stale.attempts.count() == 0 and "node-b:201 stopped" in stale.phase


def test_a_forge_request_of_a_dead_process_on_this_node_is_taken_at_once():
    dead = _running_request(f"{cluster.node_name()}:{_dead_pid()}", 60)
    requeued: list[int] = []
    forge_services.forge_requests_recover(requeue=requeued.append)
    assert requeued == [dead.pk]


def test_work_this_very_process_holds_is_never_taken_from_it_while_it_runs():
    """The periodic recovery runs in the consumer whose worker thread holds the request or fine-tune: that
    holder is alive. A row with this pid but another start time was left by an earlier process that had
    the pid (pid 1 in a restarted container, say): that one is taken. Before, each minute's recovery
    requeued live work: a forge request on the Forge page registered its tool twice."""
    mine = cluster.worker_id()
    assert mine == f"{cluster.node_name()}:{os.getpid()}@{process_start(os.getpid())}"
    request = _running_request(mine, 60)
    job = _job(FineTuneJob.Status.RUNNING, mine, 60)
    requeued: list[int] = []
    assert forge_services.forge_requests_recover(requeue=requeued.append) == {"requeued": 0, "failed": 0}
    assert finetunes_recover(requeue=requeued.append) == 0
    assert requeued == [] and not cluster.worker_gone(mine)

    earlier = f"{cluster.node_name()}:{os.getpid()}@1"  # this pid, started at another time
    assert cluster.worker_gone(earlier)
    ForgeRequest.objects.filter(pk=request.pk).update(worker=earlier)
    FineTuneJob.objects.filter(pk=job.pk).update(worker=earlier)
    assert forge_services.forge_requests_recover(requeue=requeued.append)["requeued"] == 1
    assert finetunes_recover(requeue=requeued.append) == 1
    assert requeued == [request.pk, job.pk]


def test_the_forge_task_claims_with_a_lease(scripted_model):
    from forge.tasks import forge_request_run

    request = ForgeRequest.objects.create(spec="add_two_integers(a, b) returns the sum, e.g. (2, 3) -> 5")
    assert forge_request_run.call_local(request.pk) == "succeeded"
    request.refresh_from_db()
    assert request.worker == cluster.worker_id() and request.lease_until is not None
    assert forge_request_run.call_local(request.pk) is None  # finished: nobody claims it again


# ------------------------------------------------------------------------------------- fine-tunes
def _job(status: str, worker: str, lease_s: float) -> FineTuneJob:
    return FineTuneJob.objects.create(persona="BRICK", base_model="/nowhere.gguf", status=status, worker=worker,
                                      lease_until=timezone.now() + timedelta(seconds=lease_s), progress=0.4, step=7)


def test_a_fine_tune_whose_worker_died_starts_over_and_a_live_one_is_left_alone():
    stale = _job(FineTuneJob.Status.RUNNING, "node-b:201", -1)
    live = _job(FineTuneJob.Status.RUNNING, "node-c:301", 60)
    cancelling = _job(FineTuneJob.Status.CANCELLING, "node-b:202", -1)
    requeued: list[int] = []
    assert finetunes_recover(requeue=requeued.append) == 2
    assert finetunes_recover(requeue=requeued.append) == 0
    stale.refresh_from_db()
    live.refresh_from_db()
    cancelling.refresh_from_db()
    assert requeued == [stale.pk]
    assert stale.status == FineTuneJob.Status.QUEUED and stale.progress == 0 and stale.worker == ""
    assert "node-b:201 stopped mid-training" in stale.log
    assert live.status == FineTuneJob.Status.RUNNING and live.step == 7
    assert cancelling.status == FineTuneJob.Status.CANCELLED and cancelling.finished is not None


def test_the_lease_keeper_renews_only_while_the_row_is_its_own():
    job = _job(FineTuneJob.Status.RUNNING, "node-a:1", 1)
    before = job.lease_until
    keeper = cluster.LeaseKeeper(FineTuneJob, job.pk, 3, worker="node-a:1")
    keeper.start()
    try:
        deadline = timezone.now() + timedelta(seconds=5)
        while FineTuneJob.objects.get(pk=job.pk).lease_until == before and timezone.now() < deadline:
            threading.Event().wait(0.1)
        renewed = FineTuneJob.objects.get(pk=job.pk).lease_until
        assert renewed > before
        FineTuneJob.objects.filter(pk=job.pk).update(worker="node-b:2")  # taken over meanwhile
        threading.Event().wait(1.3)
        assert FineTuneJob.objects.get(pk=job.pk).lease_until == renewed
    finally:
        keeper.stop()


# --------------------------------------------------------------------------------- periodic jobs
@pytest.fixture
def real_broker(tmp_path, settings):
    sock = Path(f"/tmp/a4ps-cl-{os.getpid()}.sock")
    proc = broker.start_embedded(sock, tmp_path / "broker")
    settings.BROKER_URL = f"unix://{sock}"
    cluster._client = None
    yield settings.BROKER_URL
    cluster._client = None
    proc.terminate()
    proc.wait()
    sock.unlink(missing_ok=True)


def test_a_periodic_job_runs_once_per_period_however_many_consumers_fire_it(real_broker):
    ran: list[int] = []

    @cluster.once_per_period("test-job", 60)
    def job() -> str:
        ran.append(1)
        return "did it"

    outcomes = [job() for _ in range(4)]  # four consumers firing the same minute
    assert outcomes.count("did it") == 1 and outcomes.count(None) == 3 and len(ran) == 1
    assert cluster.period_claim("test-job", 60, now=10_000_020.0)  # another period: claimable again
    assert not cluster.period_claim("test-job", 60, now=10_000_079.0)


def test_a_periodic_job_is_skipped_not_crashed_when_the_broker_is_away(settings):
    settings.BROKER_URL = "unix:///nonexistent/broker.sock"
    cluster._client = None
    try:
        assert cluster.once_per_period("test-job", 60)(lambda: "ran")() is None
    finally:
        cluster._client = None


# ------------------------------------------------------------------------------------------- roles
@pytest.mark.parametrize("role", ["web", "worker"])
def test_a_split_role_without_a_shared_broker_is_refused_with_the_reason(role, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("A4PS_", "DJANGO_SETTINGS", "REDIS_URL"))}
    env.update(A4PS_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="a4ps_site.settings")
    done = subprocess.run([sys.executable, "manage.py", "up", "--role", role], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"--role {role} needs REDIS_URL" in done.stderr
    assert not (tmp_path / "a4ps.sqlite3").exists()  # refused before anything is touched


def test_the_broker_password_is_never_printed(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("A4PS_", "DJANGO_SETTINGS"))}
    env.update(A4PS_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="a4ps_site.settings",
               REDIS_URL="redis://:s3cret-pass@127.0.0.1:1/0")
    done = subprocess.run([sys.executable, "manage.py", "up", "--role", "web"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "does not answer a PING" in done.stderr
    assert "s3cret-pass" not in done.stdout + done.stderr and "//***@127.0.0.1:1" in done.stderr
