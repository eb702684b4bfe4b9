"""The layering is a test: the import contracts hold, break on a wrong import, and every module imports."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("a4ps_site", "personas", "forge", "memory")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(cwd / ".importlinter"), "--no-cache"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _scratch_project(tmp_path: Path, extra: dict[str, str]) -> Path:
    """The real contract file over a tiny tree with the same packages (and the modules it names)."""
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    files = {
        "a4ps_site/__init__.py": "",
        "a4ps_site/routing.py": "import django\n",
        "personas/__init__.py": "", "personas/models.py": "import a4ps_site\n", "personas/events.py": "",
        "personas/runs.py": "", "personas/llm.py": "", "personas/routing.py": "",
        "personas/graph/__init__.py": "", "personas/inference/__init__.py": "",
        "forge/__init__.py": "import personas.models\n", "forge/routing.py": "",
        "memory/__init__.py": "import personas.models\n", "memory/routing.py": "",
        **extra,
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_contracts_ignore_no_import():
    # The websocket router finds each app's routes by name, as include() does for URLs: no exception.
    assert "ignore_imports" not in (ROOT / ".importlinter").read_text()


def test_the_websocket_router_serves_every_app_s_routes():
    from a4ps_site.routing import websocket_urlpatterns
    from forge.routing import websocket_urlpatterns as forge_ws
    from memory.routing import websocket_urlpatterns as memory_ws
    from personas.routing import websocket_urlpatterns as personas_ws

    assert websocket_urlpatterns == [*personas_ws, *forge_ws, *memory_ws]


def test_a_scratch_tree_that_follows_the_layers_passes(tmp_path):
    assert _lint(_scratch_project(tmp_path, {})).returncode == 0


@pytest.mark.parametrize("name, text, contract", [
    ("personas/kernel_reaches_up.py", "import forge\n", "Apps sit on the personas kernel"),
    ("forge/reaches_across.py", "import memory\n", "Apps sit on the personas kernel"),
    ("a4ps_site/infrastructure_reaches_up.py", "import personas.models\n", "Apps sit on the personas kernel"),
    ("personas/graph/nodes.py", "import personas.models\n", "The cognitive graph and model access"),
    ("personas/inference/manager.py", "import django\n", "The cognitive graph and model access"),
])
def test_a_wrong_import_breaks_a_contract(tmp_path, name, text, contract):
    result = _lint(_scratch_project(tmp_path, {name: text}))
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line or contract in line]
    assert any(contract in line for line in broken), result.stdout


def _project_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


IMPORT_EACH = r"""
import importlib, sys
import django
django.setup()
# Keep what Django's start-up registered once (apps, models, Huey tasks); forget every other project
# module before each import, so each one is imported fresh, in this order, with whatever it pulls in.
KEEP = (".apps", ".models", ".tasks", ".admin")
def forget():
    for name in list(sys.modules):
        if name.split(".")[0] in {"a4ps_site", "personas", "forge", "memory"} and "." in name \
                and not name.endswith(KEEP) and ".models." not in name and ".migrations" not in name:
            del sys.modules[name]
for name in sys.argv[1:]:
    forget()
    try:
        importlib.import_module(name)
    except Exception as exc:
        print(f"FAILED {name}: {type(exc).__name__}: {exc}")
        raise SystemExit(1)
print("imported", len(sys.argv) - 1)
"""


@pytest.mark.parametrize("order", ["alphabetical", "reversed"])
def test_every_module_imports_on_its_own(order):
    modules = _project_modules()
    if order == "reversed":
        modules.reverse()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", IMPORT_EACH, *modules], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"imported {len(modules)}" in result.stdout


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_ruff_is_clean():
    result = subprocess.run([_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy_is_clean():
    result = subprocess.run([_tool("mypy"), "--no-incremental"], cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Success" in result.stdout
