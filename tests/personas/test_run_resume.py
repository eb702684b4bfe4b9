"""Crash safety: SIGKILL the Huey consumer mid-run; a new consumer resumes from the checkpoint."""
from __future__ import annotations

import os
import signal

import pytest

from tests.livestack import cleanup, start_stack

pytestmark = pytest.mark.stack

EXPECTED = ["route", "thoughts", "evaluation", "thesis", "antithesis", "dissonance", "answer", "memory"]


def test_a_killed_worker_is_resumed_without_lost_or_duplicated_steps():
    stack = start_stack(args=("--no-worker",))
    try:
        worker = stack.start_worker(SCRIPTED_DELAY="1.0")
        run_id = stack.submit("What is 2 + 2?")
        # Kill the consumer once a few steps are in, while a node is mid-flight.
        stack.wait_for("select count(*) from personas_runstep where run_id=?", (run_id,), until=lambda r: r[0] >= 3)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        status, = stack.wait_for("select status from personas_run where id=?", (run_id,))
        assert status == "running"  # the dead worker could not record anything
        before = stack.wait_for("select count(*) from personas_runstep where run_id=?", (run_id,))[0]

        stack.start_worker(SCRIPTED_DELAY="0")
        stack.wait_for("select status from personas_run where id=?", (run_id,), until=lambda r: r[0] == "done",
                       timeout=180)
        with stack.db() as conn:
            steps = conn.execute("select seq, key, kind from personas_runstep where run_id=? order by seq",
                                 (run_id,)).fetchall()
            attempts, answer = conn.execute("select attempts, final_answer from personas_run where id=?",
                                            (run_id,)).fetchone()
            resumed = conn.execute("select count(*) from personas_event where kind='run.resumed'").fetchone()[0]
        assert [s[0] for s in steps] == list(range(1, len(steps) + 1))  # no gaps
        assert len({s[1] for s in steps}) == len(steps)  # no duplicates
        assert [s[2] for s in steps] == EXPECTED  # nothing lost, nothing repeated
        assert len(steps) > before
        assert attempts == 2 and resumed == 1
        assert answer == "The answer is 4."
    finally:
        cleanup(stack)
