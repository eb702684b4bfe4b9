"""The sandbox self-test: the attack suite against each available backend, the quick pass that keeps a
weak backend out of use, the command and the page."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from forge import sandbox, services
from forge.selectors import selftest_path
from forge.selftest import (
    ATTACKS,
    ESCAPE,
    LIMIT,
    OWNER_FILE,
    UNOWNED_AGE_S,
    WITNESS_PREFIX,
    Witness,
    quick_verdict,
    run_selftest,
    sweep_witnesses,
)


@pytest.fixture(scope="module", autouse=True)
def no_witness_dir_left():
    def found():
        return set(Path(tempfile.gettempdir()).glob(WITNESS_PREFIX + "*"))

    before = found()
    yield
    assert found() - before == set()


def test_the_suite_has_at_least_30_attacks_of_both_kinds_and_a_quick_pass():
    assert len(ATTACKS) >= 30
    assert len({a.key for a in ATTACKS}) == len(ATTACKS)
    kinds = {a.kind for a in ATTACKS}
    assert kinds == {ESCAPE, LIMIT}
    assert all(a.kind == ESCAPE for a in ATTACKS if a.quick) and sum(a.quick for a in ATTACKS) >= 5


@pytest.mark.parametrize("name", sandbox.ORDER)
def test_every_available_backend_contains_every_escape(name):
    if not sandbox.get_backend(name).status().available:
        pytest.skip(f"{name} is not available here")
    [report] = run_selftest([name])
    assert report.available and len(report.cells) == len(ATTACKS)
    assert [c.key for c in report.escapes] == [], [(c.key, c.evidence) for c in report.escapes]
    if os.geteuid() == 0 and not name.startswith("docker"):
        # as root a cgroup per run holds every limit across the job's processes too
        assert [(c.key, c.evidence) for c in report.weak_limits] == []


def test_a_self_test_killed_midway_has_its_witness_dir_removed_by_the_next(tmp_path, monkeypatch):
    """A server stopped during its start-up quick pass never reaches the self-test's cleanup; the next
    self-test on the host removes what it left, and nothing of a self-test still running."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR, in this process and the child
    child = subprocess.Popen(
        [sys.executable, "-c", "import django, sys, time; django.setup(); from forge.selftest import Witness; "
         "w = Witness(); print(w.dir, flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"})
    killed_dir = child.stdout.readline().strip()
    assert killed_dir.startswith(str(tmp_path / WITNESS_PREFIX)) and (tmp_path / killed_dir / "secret.txt").exists()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()

    assert os.path.exists(killed_dir)
    running = Witness()  # the next self-test sweeps as it starts
    try:
        assert not os.path.exists(killed_dir)
        old = tmp_path / f"{WITNESS_PREFIX}from-before-owners"
        old.mkdir()
        os.utime(old, (time.time() - UNOWNED_AGE_S - 60,) * 2)
        fresh = tmp_path / f"{WITNESS_PREFIX}being-set-up"
        fresh.mkdir()
        assert sweep_witnesses() == [old]
        assert fresh.exists() and (running.dir / OWNER_FILE).exists() and (running.dir / "secret.txt").exists()
    finally:
        running.close()
    assert not running.dir.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a directory of another user")
def test_the_sweep_leaves_another_users_dirs_alone(tmp_path):
    theirs = tmp_path / f"{WITNESS_PREFIX}theirs"
    theirs.mkdir()
    (theirs / OWNER_FILE).write_text(f"{socket.gethostname()}:999999999:0")  # a pid that cannot run
    os.utime(theirs, (time.time() - UNOWNED_AGE_S - 60,) * 2)
    mine = tmp_path / f"{WITNESS_PREFIX}mine"
    shutil.copytree(theirs, mine)
    os.chown(theirs, 65534, 65534)
    assert sweep_witnesses(tmp_path) == [mine] and theirs.exists()


class _NoSeccomp(sandbox.LocalBackend):
    """The local backend whose syscall filter silently fails for real jobs (its probe still looks fine):
    what a broken host would look like."""

    name = "local"

    def _execute(self, job, limits):
        return super()._execute(job if job.get("probe") else dict(job, seccomp=False), limits)


def test_a_backend_that_lets_an_escape_through_is_not_used():
    weak = _NoSeccomp()
    assert "through a socket pair: the job reported: ESCAPED" in quick_verdict(weak)
    status = weak.status(quick=True)
    assert not status.available
    assert status.reason.startswith("failed the sandbox self-test: ")
    assert "socket() as a raw system call" in status.reason


def test_a_sound_backend_says_it_passed_the_quick_pass():
    status = sandbox.get_backend("local").status(quick=True)
    assert status.available
    assert "quick self-test at start: every escape contained" in status.enforced


def test_the_command_prints_the_matrix_and_fails_on_an_escape(capsys, monkeypatch):
    call_command("sandbox_selftest", "--backend", "local", "--quick", "--json")
    [report] = json.loads(capsys.readouterr().out)
    assert report["backend"] == "local" and report["escapes"] == 0
    assert {c["key"] for c in report["cells"]} == {a.key for a in ATTACKS if a.quick}
    assert all(c["contained"] and c["evidence"] for c in report["cells"])
    monkeypatch.setitem(sandbox._BACKENDS, "local", _NoSeccomp())
    with pytest.raises(Exception, match="escapes got through: local: net-socketpair"):
        call_command("sandbox_selftest", "--backend", "local", "--quick")


# ------------------------------------------------------------------------------------ the page
@pytest.mark.django_db
def test_the_page_needs_a_login(client, settings, tmp_path):
    settings.VAR_DIR = settings.SHARED_DIR = tmp_path
    response = client.get(reverse("sandbox_selftest"))
    assert response.status_code == 302 and "/login" in response["Location"]
    response = client.post(reverse("sandbox_selftest_start"), {"backend": "local"})
    assert response.status_code == 302 and "/login" in response["Location"]
    assert not selftest_path().exists()  # nothing was started


@pytest.mark.django_db
def test_start_from_the_page_runs_in_the_worker_and_shows_the_matrix(auth_client, settings, tmp_path):
    settings.VAR_DIR = settings.SHARED_DIR = tmp_path
    html = auth_client.get(reverse("sandbox_selftest")).content.decode()
    assert "No self-test has run yet" in html and 'name="backend" value="local"' in html
    response = auth_client.post(reverse("sandbox_selftest_start"), {"backend": "local", "quick": "on"})
    assert response.status_code == 302  # Huey runs immediately under test: the run is done
    state = json.loads(selftest_path().read_text())
    assert state["status"] == "done" and state["escapes"] == 0 and state["done"] == state["total"] > 0
    html = auth_client.get(reverse("sandbox_selftest")).content.decode()
    assert 'data-status="done"' in html and "Every escape was contained." in html
    assert html.count('class="cell contained"') == state["total"]
    assert "hx-trigger" not in html  # nothing left to follow


@pytest.mark.django_db
def test_a_bad_choice_or_a_second_start_is_refused_with_a_reason(auth_client, settings, tmp_path):
    settings.VAR_DIR = settings.SHARED_DIR = tmp_path
    response = auth_client.post(reverse("sandbox_selftest_start"), {"backend": "nonsense"}, follow=True)
    assert "Choose backends among" in response.content.decode()
    assert not selftest_path().exists()
    services.selftest_start(backends=["local"], quick=True, by="ada")  # queued, no worker takes it here
    response = auth_client.post(reverse("sandbox_selftest_start"), {"backend": "local"}, follow=True)
    html = response.content.decode()
    assert "A sandbox self-test is already under way." in html
    assert 'hx-trigger="every 2s"' in html and "waiting for a worker" in html
