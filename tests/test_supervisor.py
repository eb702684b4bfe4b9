"""The supervisor heals a crash: SIGKILL the worker mid-run under `manage.py up` on the real embedded
model; the product stays up, the worker comes back, and the run finishes exactly once."""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from tests.livestack import cleanup, start_stack
from tests.personas.test_run_real_model import small_config
from tests.test_live_stack import _alive, _children_of

pytestmark = pytest.mark.stack

SMALL = """
[graph]
thoughts = 2
max_turns = 1
max_tokens = 48
json_max_tokens = 96
run_tokens = 600
"""


def _worker_pid(supervisor: int) -> int:
    for pid in _children_of(supervisor):
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"run_huey" in fh.read():
                return pid
    raise AssertionError("no Huey consumer among the supervisor's children")


def test_a_killed_worker_is_restarted_and_the_run_finishes_once():
    config = small_config(SMALL)
    stack = start_stack(extra_env={"A4PS_CONFIG_DIR": str(config)})
    try:
        first_worker = _worker_pid(stack.proc.pid)
        run_id = stack.submit("In one sentence: why do leaves fall in autumn?")
        stack.wait_for("select count(*) from personas_runstep where run_id=?", (run_id,), timeout=600,
                       until=lambda row: row[0] >= 1)
        os.killpg(first_worker, signal.SIGKILL)  # the consumer leads its own process group
        # The product stays up and the supervisor starts a new consumer.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "worker restarted" not in stack.log():
            time.sleep(0.2)
        assert "the worker process exited (code -9): restarting it in 1 s" in stack.log(), stack.log()[-3000:]
        assert stack.proc.poll() is None and not _alive(first_worker)
        second_worker = _worker_pid(stack.proc.pid)
        assert second_worker != first_worker
        status = stack.wait_for("select status, final_answer from personas_run where id=?", (run_id,),
                                timeout=900, until=lambda row: row[0] in ("done", "failed", "cancelled"))
        assert status[0] == "done" and status[1].strip(), stack.log()[-3000:]
        with stack.db() as conn:
            keys = [r[0] for r in conn.execute("select key from personas_runstep where run_id=?", (run_id,))]
            answers = conn.execute("select count(*) from personas_runstep where run_id=? and kind='answer'",
                                   (run_id,)).fetchone()[0]
            restarted = conn.execute("select count(*) from personas_event where kind='system.restarted'").fetchone()[0]
            resumed = conn.execute("select count(*) from personas_event where kind='run.resumed'").fetchone()[0]
            requests = conn.execute("select spec, count(*), max(status) from forge_forgerequest where run_id=? "
                                    "group by spec", (run_id,)).fetchall()
        assert len(keys) == len(set(keys)) and answers == 1  # no step lost or repeated
        assert restarted == 1 and resumed == 1
        assert all(count == 1 and status != "running" for _, count, status in requests)  # each once, finished
        assert not list(Path(tempfile.gettempdir()).glob(f"a4ps-llm-{first_worker}-*"))  # its model dir is gone
    finally:
        cleanup(stack)
        shutil.rmtree(config, ignore_errors=True)
