"""`python -m a4ps_site.die_with_parent PARENT_PID CMD ...`: run CMD so that it gets SIGTERM when the
supervisor dies, however it dies.

The supervisor used to set this up in a `preexec_fn`, which makes Python fork the whole supervisor —
and libraries that hook fork (LanceDB) then warned of possible deadlocks on every start. Here the
child asks for the signal itself and then becomes CMD (the setting survives exec).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m a4ps_site.die_with_parent PARENT_PID CMD [ARGS ...]")
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the supervisor still stops its children on every clean exit
    if os.getppid() != int(argv[0]):
        sys.exit(0)  # the supervisor died before the signal was armed: do not start orphaned
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
