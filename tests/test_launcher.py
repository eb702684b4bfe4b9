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
    monkeypatch.setattr(a4ps, "cgroup2_mounted", lambda: True)
    # Set first, then removed: the fixture's undo then removes what the launcher writes, so that no
    # later test's sandbox takes its own cgroup for delegated.
    for name in ("A4PS_CGROUP_DELEGATED", "A4PS_SCOPE", "INVOCATION_ID", "A4PS_SANDBOX_CGROUPS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.chdir(ROOT)  # the launcher changes directory


def test_not_root_the_product_starts_in_a_scope_with_its_cgroup_delegated(tmp_path, monkeypatch, not_root):
    log = systemd_run(tmp_path, works=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    scoped = a4ps.delegated_scope(["python", "manage.py", "up"])
    assert scoped is not None
    argv, name = scoped
    assert name.startswith(f"a4ps-{os.getpid()}-") and name.endswith(".scope")
    assert argv == [str(tmp_path / "bin" / "systemd-run"), "--user", "--scope", "--quiet", "--collect",
                    f"--unit={name}", "-p", "Delegate=yes", "--", "python", "manage.py", "up"]
    # Asked first, under a name of its own:
    assert log.read_text() == f"--user --scope --quiet --collect --unit=probe-{name} -p Delegate=yes -- true\n"

    started = capture_exec(monkeypatch)
    with pytest.raises(Execed):
        a4ps.main(["a4ps.py", "run", "--no-browser"])
    assert len(started) == 1
    assert started[0][-4:] == [str(a4ps.PY), "manage.py", "up", "--no-browser"]
    assert started[0][:2] == [str(tmp_path / "bin" / "systemd-run"), "--user"]
    # The sandbox takes its cgroup for delegated only when it is the scope of that name.
    unit = next(arg for arg in started[0] if arg.startswith("--unit="))
    assert os.environ["A4PS_CGROUP_DELEGATED"] == unit.removeprefix("--unit=")


@pytest.mark.parametrize("case", ["no user session", "no systemd-run", "turned off", "cgroups off",
                                  "in a unit already", "no cgroup v2", "root"])
def test_without_a_user_session_or_as_root_the_product_starts_as_it_is(tmp_path, monkeypatch, not_root, case):
    # Every case but the first has a systemd-run that works: only the case itself keeps the scope away.
    log = systemd_run(tmp_path, works=case != "no user session")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    if case == "no systemd-run":
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    elif case == "turned off":
        monkeypatch.setenv("A4PS_SCOPE", "0")
    elif case == "cgroups off":
        monkeypatch.setenv("A4PS_SANDBOX_CGROUPS", "0")
    elif case == "in a unit already":
        monkeypatch.setenv("INVOCATION_ID", "5d3c0b6a9e0f4f1e8a2b7c6d5e4f3a2b")  # a service keeps its processes
    elif case == "no cgroup v2":
        monkeypatch.setattr(a4ps, "cgroup2_mounted", lambda: False)
    elif case == "root":
        monkeypatch.setattr(a4ps.os, "geteuid", lambda: 0)
    assert a4ps.delegated_scope(["python", "manage.py", "up"]) is None
    assert log.exists() == (case == "no user session")  # asked only where it could have helped

    started = capture_exec(monkeypatch)
    with pytest.raises(Execed):
        a4ps.main(["a4ps.py", "run"])
    assert started == [[str(a4ps.PY), "manage.py", "up"]]
    assert "A4PS_CGROUP_DELEGATED" not in os.environ
