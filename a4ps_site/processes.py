"""Which process is which: a pid and its start time name one process, even after the pid is reused.
Standard library only, so the sandbox launcher and the cluster both use it without Django."""
from __future__ import annotations

from pathlib import Path


def process_start(pid: int) -> str:
    """The start time of process pid in clock ticks since boot ("" when it does not exist, or where
    there is no /proc)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat_line.rpartition(")")[2].split()[19]
