"""The launcher starts the product in a delegated systemd user scope where it can, and only there."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import a4ps  # noqa: E402


def systemd_run(tmp_path: Path, *, works: bool) -> Path:
    """A stand-in systemd-run: logs its argv; runs the command after `--` or fails as with no user bus."""
    log = tmp_path / "calls"
    script = tmp_path / "bin" / "systemd-run"
    script.parent.mkdir()
    body = ('while [ "$1" != "--" ]; do shift; done; shift; exec "$@"' if works
            else 'echo "Failed to connect to bus: No medium found" >&2; exit 1')
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


class Execed(Exception):
    """What os.execv does to the launcher: it never comes back."""


def capture_exec(monkeypatch) -> list[list[str]]:
    started: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        started.append(argv)
        raise Execed

    monkeypatch.setattr(a4ps, "ensure_venv", lambda: None)
    monkeypatch.setattr(a4ps.os, "execv", execv)
    return started


@pytest.fixture
def not_root(monkeypatch):
    monkeypatch.setattr(a4ps.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("A4PS_CGROUP_DELEGATED", raising=False)
    monkeypatch.delenv("A4PS_SCOPE", raising=False)


def test_not_root_the_product_starts_in_a_scope_with_its_cgroup_delegated(tmp_path, monkeypatch, not_root):
    log = systemd_run(tmp_path, works=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    scoped = a4ps.delegated_scope(["python", "manage.py", "up"])
    assert scoped == [str(tmp_path / "bin" / "systemd-run"), "--user", "--scope", "--quiet", "--collect",
                      "-p", "Delegate=yes", "--", "python", "manage.py", "up"]
    assert log.read_text() == "--user --scope --quiet --collect -p Delegate=yes -- true\n"  # asked first

    started = capture_exec(monkeypatch)
    with pytest.raises(Execed):
        a4ps.main(["a4ps.py", "run", "--no-browser"])
    assert len(started) == 1
    assert started[0][-4:] == [str(a4ps.PY), "manage.py", "up", "--no-browser"]
    assert started[0][:2] == [str(tmp_path / "bin" / "systemd-run"), "--user"]
    assert os.environ["A4PS_CGROUP_DELEGATED"] == "1"  # the sandbox takes its own cgroup as delegated


@pytest.mark.parametrize("case", ["no user session", "no systemd-run", "turned off", "root"])
def test_without_a_user_session_or_as_root_the_product_starts_as_it_is(tmp_path, monkeypatch, not_root, case):
    systemd_run(tmp_path, works=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    if case == "no systemd-run":
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    elif case == "turned off":
        (tmp_path / "w").mkdir()
        systemd_run(tmp_path / "w", works=True)
        monkeypatch.setenv("PATH", f"{tmp_path / 'w' / 'bin'}:/usr/bin:/bin")
        monkeypatch.setenv("A4PS_SCOPE", "0")
    elif case == "root":
        monkeypatch.setattr(a4ps.os, "geteuid", lambda: 0)
    assert a4ps.delegated_scope(["python", "manage.py", "up"]) is None

    started = capture_exec(monkeypatch)
    with pytest.raises(Execed):
        a4ps.main(["a4ps.py", "run"])
    assert started == [[str(a4ps.PY), "manage.py", "up"]]
    assert "A4PS_CGROUP_DELEGATED" not in os.environ
