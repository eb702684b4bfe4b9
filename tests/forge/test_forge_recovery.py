"""A worker that dies mid-forge: its requests are taken up again, never duplicated, and its private
model-server directory is removed by the next worker."""
from __future__ import annotations

import os

import pytest

from forge import services
from forge.models import ForgeAttempt, ForgeRequest
from personas.inference.embedded_backend import remove_stale_socket_dirs
from personas.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = "add_two_integers(a, b) returns the sum of two integers, e.g. add_two_integers(2, 3) == 5"


def _orphan(*, source: str, run: Run | None = None) -> ForgeRequest:
    request = ForgeRequest.objects.create(spec=SPEC, source=source, run=run, status=ForgeRequest.Status.RUNNING)
    ForgeAttempt.objects.create(request=request, number=1, code="def half(", passed=False)
    return request


def test_a_resumed_run_takes_up_its_own_unfinished_request_instead_of_a_new_one(scripted_model, personas_seeded):
    run = Run.objects.create(task="1 + 2?", status=Run.Status.RUNNING)
    orphan = _orphan(source=ForgeRequest.Source.GRAPH, run=run)
    outcome = services.forge_for_graph(run_id=run.pk, spec=SPEC)
    assert outcome["status"] == "created" and outcome["forge_request"] == orphan.pk
    assert ForgeRequest.objects.filter(run=run).count() == 1
    orphan.refresh_from_db()
    assert orphan.status == ForgeRequest.Status.SUCCEEDED
    assert "def half(" not in "".join(orphan.attempts.values_list("code", flat=True))  # partial attempt gone
    # Asked once more (the node ran again), the finished request's outcome is reused.
    again = services.forge_for_graph(run_id=run.pk, spec=SPEC)
    assert again["forge_request"] == orphan.pk and ForgeRequest.objects.count() == 1


def test_at_worker_start_a_persons_request_is_queued_again_and_a_dead_runs_request_failed(scripted_model):
    mine = _orphan(source=ForgeRequest.Source.USER)
    finished_run = Run.objects.create(task="t", status=Run.Status.DONE)
    of_dead_run = _orphan(source=ForgeRequest.Source.GRAPH, run=finished_run)
    live_run = Run.objects.create(task="t", status=Run.Status.RUNNING)
    of_live_run = _orphan(source=ForgeRequest.Source.GRAPH, run=live_run)
    requeued: list[int] = []
    counts = services.forge_requests_recover(requeue=requeued.append)
    assert counts == {"requeued": 1, "failed": 1} and requeued == [mine.pk]
    mine.refresh_from_db()
    of_dead_run.refresh_from_db()
    of_live_run.refresh_from_db()
    assert mine.status == ForgeRequest.Status.QUEUED and mine.attempts.count() == 0
    assert of_dead_run.status == ForgeRequest.Status.FAILED and "worker stopped" in of_dead_run.error
    assert of_live_run.status == ForgeRequest.Status.RUNNING  # its run resumes and takes it up
    from forge.tasks import forge_request_run

    assert forge_request_run.call_local(mine.pk) == "succeeded"


def test_model_server_dirs_of_dead_processes_are_removed(tmp_path):
    mine = tmp_path / f"a4ps-llm-{os.getpid()}-abc"
    dead = tmp_path / "a4ps-llm-999999-xyz"
    other = tmp_path / "unrelated-999999"
    for path in (mine, dead, other):
        path.mkdir()
    removed = remove_stale_socket_dirs(lambda pid: pid == os.getpid(), temp_dir=str(tmp_path))
    assert removed == [str(dead)]
    assert mine.exists() and other.exists() and not dead.exists()
