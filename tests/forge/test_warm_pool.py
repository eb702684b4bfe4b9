"""The warm pool: sandboxes started ahead of need (Docker containers, or launched runners of the local
and bubblewrap backends), one job each, then removed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.urls import reverse

from forge import sandbox
from forge.config import ForgeSettings
from forge.selectors import pool_status_dir

LIMITS = sandbox.Limits(wall_s=5, cpu_s=5, memory_mb=128, pids=32, file_size_mb=8, open_files=32,
                        output_bytes=16 * 1024, scratch_mb=16)


def _warm_containers() -> set[str]:
    done = subprocess.run(["docker", "ps", "-a", "--filter", "label=a4ps.warm", "--format", "{{.Names}}"],
                          capture_output=True, text=True, check=False, timeout=60)
    return {line for line in done.stdout.split() if line.startswith(f"a4ps-warm-{os.getpid()}-")}


@pytest.fixture(scope="module")
def docker_backend():
    for name in ("docker-runsc", "docker-runc"):
        backend = sandbox.get_backend(name)
        if backend.status().available:
            yield backend
            backend.warm(0, LIMITS)
            deadline = time.monotonic() + 60
            while _warm_containers() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _warm_containers() == set(), "warm containers outlived their pool"
            return
    pytest.skip("no Docker backend available here (sandbox/setup_host.sh as root starts one)")


def test_each_job_gets_a_container_of_its_own_ahead_of_need(docker_backend):
    seen: list[dict] = []
    docker_backend.warm(2, LIMITS, on_change=seen.append)
    pool = docker_backend._pool
    assert pool.wait_ready(120), pool.status()
    first = docker_backend.run("import os\nopen('left.txt', 'w').write('x')\nprint(os.getuid())", limits=LIMITS)
    assert pool.wait_ready(120), pool.status()
    second = docker_backend.run("import os\nprint(sorted(os.listdir('.')), os.getuid())", limits=LIMITS)
    assert first.ok and second.ok, (first, second)
    assert first.warm and second.warm
    assert "left.txt" not in second.stdout  # nothing of one job is there for the next
    assert first.stdout.split()[-1] != second.stdout.split()[-1]  # a fresh uid each time
    status = pool.status()
    assert status["served"] == 2 and status["size"] == 2
    assert seen and seen[-1]["backend"] == docker_backend.name


def test_other_limits_start_cold_and_a_warm_job_still_meets_its_wall_clock(docker_backend):
    docker_backend.warm(1, LIMITS)
    assert docker_backend._pool.wait_ready(120)
    cold = docker_backend.run("print(1)", limits=sandbox.Limits(wall_s=6))
    assert cold.ok and not cold.warm
    started = time.monotonic()
    busy = docker_backend.run("while True:\n    pass\n", limits=LIMITS)
    assert busy.warm and busy.killed_reason in ("timeout", "cpu"), busy
    assert time.monotonic() - started < LIMITS.wall_s + 10


def test_a_network_attack_in_a_warm_container_is_contained(docker_backend):
    docker_backend.warm(1, LIMITS)
    assert docker_backend._pool.wait_ready(120)
    result = docker_backend.run("import socket\ns = socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
                                "print('CONNECTED')\n", limits=LIMITS)
    assert result.warm and "CONNECTED" not in result.stdout and not result.ok


def test_a_stopping_worker_leaves_no_warm_container(docker_backend):
    docker_backend.warm(2, LIMITS)
    assert docker_backend._pool.wait_ready(120)
    assert len(_warm_containers()) >= 2
    docker_backend.stop_pool()
    assert docker_backend.pool_status() is None
    assert _warm_containers() == set()


def _sandbox_containers() -> dict[str, str]:
    done = subprocess.run(["docker", "ps", "-a", "--filter", "label=a4ps.sandbox=1",
                           "--format", "{{.Names}} {{.Label \"a4ps.owner\"}}"],
                          capture_output=True, text=True, check=False, timeout=60)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def test_containers_of_a_killed_worker_are_swept_and_no_one_elses(docker_backend):
    # A worker SIGKILLed mid-job: its cold container keeps running with nobody to remove it.
    child = subprocess.Popen(
        [sys.executable, "-c", "from forge import sandbox\n"
         f"sandbox.get_backend({docker_backend.name!r}).run('import time\\ntime.sleep(300)', "
         "limits=sandbox.Limits(wall_s=300, cpu_s=300))"],
        cwd=settings.BASE_DIR, start_new_session=True)
    theirs = sandbox.owner_label(child.pid)
    deadline = time.monotonic() + 120
    while theirs not in _sandbox_containers().values():
        assert time.monotonic() < deadline and child.poll() is None, "the worker's job never started"
        time.sleep(0.5)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    # Containers of a live process (this one) and of another host must survive the sweep.
    mine = f"a4ps-sweep-mine-{os.getpid()}"
    elsewhere = f"a4ps-sweep-elsewhere-{os.getpid()}"
    for name, owner in ((mine, sandbox.owner_label()), (elsewhere, f"another-host:{os.getpid()}:1")):
        subprocess.run(["docker", "run", "-d", "--name", name, "--label", "a4ps.sandbox=1",
                        "--label", f"a4ps.owner={owner}", "--network", "none", sandbox.DOCKER_IMAGE,
                        "python3", "-c", "import time; time.sleep(300)"],
                       check=True, capture_output=True, timeout=120)
    try:
        assert docker_backend.sweep_orphans() >= 1
        left = _sandbox_containers()
        assert theirs not in left.values()
        assert mine in left and elsewhere in left
    finally:
        subprocess.run(["docker", "rm", "-f", mine, elsewhere], capture_output=True, timeout=120)


# ------------------------------------------------------------------------ settings and the page
def test_warm_pool_setting_is_checked():
    assert ForgeSettings.from_dict({}).warm_pool == 2
    assert ForgeSettings.from_dict({"warm_pool": 0}).warm_pool == 0
    for bad in (-1, 17, True, "2"):
        with pytest.raises(ValueError, match="forge.warm_pool must be an integer between 0"):
            ForgeSettings.from_dict({"warm_pool": bad})


@pytest.mark.django_db
def test_the_forge_page_shows_each_live_workers_pool_and_forgets_dead_ones(auth_client, settings, tmp_path):
    settings.VAR_DIR = settings.SHARED_DIR = tmp_path
    folder = pool_status_dir()
    folder.mkdir(parents=True)
    live = {"backend": "docker-runsc", "size": 2, "ready": 1, "starting": 1, "served": 7, "missed": 2,
            "last_error": "", "pid": os.getpid()}
    (folder / f"{os.getpid()}.json").write_text(json.dumps(live))
    dead = folder / "999999999.json"
    dead.write_text(json.dumps({**live, "pid": 999999999}))
    html = auth_client.get(reverse("forge")).content.decode()
    assert f"Warm pool</strong> of worker {os.getpid()} (docker-runsc): 1 of 2 containers ready, 1 starting" in html
    assert "7 jobs served warm, 2 started cold" in html
    assert "999999999" not in html and not dead.exists()


def test_an_owner_label_names_one_process_even_after_its_pid_is_reused():
    child = subprocess.Popen(["sleep", "30"])
    label = sandbox.owner_label(child.pid)
    assert not sandbox.owner_is_gone(label)
    host, pid, _start = label.rsplit(":", 2)
    assert sandbox.owner_is_gone(f"{host}:{pid}:1")  # same pid, another process's start time
    assert not sandbox.owner_is_gone(f"another-host:{pid}:1")  # another host sweeps its own
    assert not sandbox.owner_is_gone("not a label")
    child.kill()
    child.wait()
    assert sandbox.owner_is_gone(label)


# ------------------------------------------------------------------- local and bubblewrap runners
def _scratch_dirs() -> set[str]:
    return {p.name for p in sandbox._scratch_root().glob("run-*")}


@pytest.mark.parametrize("name", ["local", "bwrap"])
def test_a_launched_runner_serves_one_job_warm_and_its_pool_leaves_nothing(name):
    backend = sandbox.get_backend(name)
    if not backend.status().available:
        pytest.skip(f"{name}: {backend.status().reason}")
    before = _scratch_dirs()
    try:
        backend.warm(2, LIMITS)
        pool = backend._pool
        assert pool.wait_ready(60), pool.status()
        waiting = {item.proc.pid for item in pool.ready}
        first = backend.run("import os\nopen('left.txt', 'w').write('x')\nprint(os.getuid(), os.getpid())",
                            limits=LIMITS)
        assert pool.wait_ready(60), pool.status()
        second = backend.run("import os\nprint(os.getuid())\nprint(sorted(os.listdir('.')))\n"
                             "print(sorted(os.environ))", limits=LIMITS)
        assert first.ok and second.ok and first.warm and second.warm, (first, second)
        assert "left.txt" not in second.stdout  # nothing of one job is there for the next
        if os.geteuid() == 0:
            assert first.stdout.split()[0] != second.stdout.splitlines()[0]  # a fresh uid each time
        if name == "local":
            assert int(first.stdout.split()[1]) in waiting  # the job ran in a runner started ahead of it
        assert "['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']" in second.stdout  # nothing of the launcher's
        cold = backend.run("print(1)", limits=sandbox.Limits(wall_s=6))
        assert cold.ok and not cold.warm  # other limits: started on demand
        started = time.monotonic()
        busy = backend.run("import os\nfor i in range(2):\n    os.fork()\nwhile True:\n    pass\n", limits=LIMITS)
        assert busy.warm and busy.killed_reason in ("timeout", "cpu"), busy
        assert time.monotonic() - started < LIMITS.wall_s + 5
        assert pool.status()["served"] == 3
        backend.stop_pool()
        assert backend.pool_status() is None
        for pid in waiting:
            assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
        assert _scratch_dirs() <= before  # no scratch dir of the pool's is left
    finally:
        backend.warm(0, LIMITS)
