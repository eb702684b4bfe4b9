"""The database tests once more, on PostgreSQL: the rest of the suite runs them on SQLite.

A private cluster starts in a temporary directory (tests/engines.py); the listed test files run in a
pytest of their own with DATABASE_URL pointing at it, and the migrations are checked to be complete
and to apply there. Without PostgreSQL installed this skips with the reason.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engines import postgres_missing, start_postgres

ROOT = Path(__file__).resolve().parent.parent

# Runs, claims across workers, forge requests, evals, codex amendments and the
# admin, curator, datasets, fine-tunes, documents, the memory store and the pages that read them all.
DATABASE_TESTS = [
    "tests/test_cluster.py",
    "tests/personas/test_runs.py",
    "tests/personas/test_codex.py",
    "tests/personas/test_pages.py",
    "tests/forge/test_forge_recovery.py",
    "tests/forge/test_forge_cli_api.py",
    "tests/forge/test_evals.py",
    "tests/forge/test_pages.py",
    "tests/memory/test_curator.py",
    "tests/memory/test_datasets.py",
    "tests/memory/test_finetune.py",
    "tests/memory/test_documents.py",
    "tests/memory/test_store.py",
    "tests/memory/test_memory_runs.py",
]

pytestmark = pytest.mark.skipif(bool(postgres_missing()), reason=postgres_missing() or "PostgreSQL is here")


@pytest.fixture(scope="module")
def postgres():
    pg = start_postgres()
    yield pg
    pg.stop()


def _env(pg, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("A4PS_", "DJANGO_SETTINGS", "PYTEST_"))}
    env.update(DATABASE_URL=pg.url, A4PS_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    return env


def test_the_migrations_are_complete_and_apply_on_postgresql(postgres, tmp_path):
    env = {**_env(postgres, tmp_path), "DJANGO_SETTINGS_MODULE": "a4ps_site.settings"}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    check = subprocess.run([*manage, "makemigrations", "--check", "--dry-run"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    tables = postgres.psql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
    assert int(tables) > 20
    assert postgres.psql("SELECT count(*) FROM django_migrations WHERE app = 'forge' AND name = '0004_leases'") == "1\n"
    # The graph's checkpoint tables come with the migrations, so no worker races to make them.
    assert int(postgres.psql("SELECT count(*) FROM checkpoint_migrations")) > 5


def test_the_database_tests_pass_on_postgresql(postgres, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *DATABASE_TESTS],
        cwd=ROOT, env=_env(postgres, tmp_path), capture_output=True, text=True, timeout=1800)
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, tail
    assert " passed" in done.stdout and "error" not in done.stdout.splitlines()[-1], tail
