"""Run the whole product: migrate, first admin, personas, broker, Huey consumer and daphne.

`--role` splits it across machines that share PostgreSQL (DATABASE_URL) and a broker (REDIS_URL):
`web` migrates (once, under a database lock), seeds and serves daphne; `worker` waits for the database
to be migrated and runs a Huey consumer; `all` (the default) is both plus, without REDIS_URL, the
embedded broker.

Ctrl-C or SIGTERM stops every child cleanly. A child that dies is restarted after a growing pause
(1, 2, 4 … s), and the restart is recorded; only a child that crashes CRASH_LIMIT times within
CRASH_WINDOW_S stops the whole product, with a message that says so.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from a4ps_site import broker, cluster, lifecycle
from a4ps_site.config import ConfigError

CRASH_LIMIT = 3  # crashes of one child within CRASH_WINDOW_S that stop the product instead of a restart
CRASH_WINDOW_S = 60.0


def _die_with_parent(cmd: list[str]) -> list[str]:
    """`cmd` started through a4ps_site.die_with_parent: it gets SIGTERM if the supervisor itself is
    killed, so no orphan survives it (without a preexec_fn, which would fork this whole process)."""
    return [sys.executable, "-m", "a4ps_site.die_with_parent", str(os.getpid()), *cmd]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


class Command(BaseCommand):
    help = "Set up and run A4PS (broker, Huey consumer, daphne) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", choices=["all", "web", "worker"], default="all",
                            help="all (default): everything on this machine; web: daphne only; worker: a Huey "
                                 "consumer only (web and worker need REDIS_URL, and DATABASE_URL across hosts)")
        parser.add_argument("--no-worker", action="store_true", help="do not start a Huey consumer")

    def handle(self, *args: Any, **options: Any) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.starters: dict[str, Callable[[], subprocess.Popen]] = {}
        self.crashes: dict[str, list[float]] = {}
        self.stopping = False
        role = options["role"]
        serves, works = role in {"all", "web"}, role in {"all", "worker"} and not options["no_worker"]
        self.serves = serves
        if role != "all" and settings.EMBEDDED_BROKER:
            raise CommandError(f"--role {role} needs REDIS_URL: web and worker processes meet on a shared broker "
                               "(the embedded one lives inside `up --role all`).")
        host, port = settings.BIND_HOST, settings.BIND_PORT
        if serves and not _port_free(host, port):
            raise CommandError(f"{host}:{port} is already in use. Stop what uses it or set A4PS_PORT.")

        if serves:
            self.say("migrating the database")
            with cluster.migration_lock():
                call_command("migrate", interactive=False, verbosity=0)
                self.ensure_admin()
                try:
                    call_command("seed_personas", verbosity=0)
                except (CommandError, ConfigError) as exc:
                    raise CommandError(f"config/codex.toml: {exc}") from None
        else:
            self.wait_for_migrations()

        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="a4ps_site.settings", PYTHONUNBUFFERED="1")
        popen: dict[str, Any] = {
            "env": env, "start_new_session": True, "cwd": settings.BASE_DIR,
        }
        try:
            python = sys.executable
            if settings.EMBEDDED_BROKER:
                self.starters["broker"] = lambda: broker.start_embedded(
                    settings.BROKER_SOCKET, settings.VAR_DIR / "broker", wrap=_die_with_parent, **popen)
                self.say(f"starting the embedded broker on {settings.BROKER_SOCKET}")
                self.children.append(("broker", self.starters["broker"]()))
            elif not broker.ping(settings.BROKER_URL, timeout=3):
                raise CommandError(f"REDIS_URL ({settings.BROKER_URL_SAFE}) does not answer a PING.")
            if serves:
                self.run_steps("broker_up", fatal=True)
            if works:
                self.starters["worker"] = lambda: subprocess.Popen(
                    _die_with_parent([python, "manage.py", "run_huey"]), **popen)
                self.say("starting the Huey consumer")
                self.children.append(("worker", self.starters["worker"]()))
            if serves:
                self.starters["web"] = lambda: subprocess.Popen(
                    _die_with_parent([python, "-m", "daphne", "-b", host, "-p", str(port),
                                      "a4ps_site.asgi:application"]), **popen)
                self.say(f"starting daphne on http://{host}:{port}")
                self.children.append(("web", self.starters["web"]()))
                self.wait_until_serving(host, port)
                self.run_steps("serving")
                self.say(f"A4PS is running at http://{host}:{port}/  (Ctrl-C stops it)")
            else:
                self.say(f"A4PS worker {cluster.node_name()} is running on {settings.BROKER_URL_SAFE}  "
                         "(Ctrl-C stops it)")
            self.supervise()
        except broker.BrokerError as exc:
            self.stop_all()
            raise CommandError(str(exc)) from None
        except BaseException:
            self.stop_all()
            raise
        self.stop_all()

    stopping_steps_done = False
    serves = True

    def wait_for_migrations(self, timeout: float = 300) -> None:
        """A worker starts on a migrated database only: the web role migrates it."""
        from django.db import connection
        from django.db.migrations.executor import MigrationExecutor

        deadline, said = time.monotonic() + timeout, False
        while True:
            try:
                executor = MigrationExecutor(connection)
                if not executor.migration_plan(executor.loader.graph.leaf_nodes()):
                    return
            except Exception as exc:  # the database is not up yet
                reason = f"the database does not answer ({exc})"
            else:
                reason = "the database has migrations to apply"
            finally:
                connection.close()
            if time.monotonic() > deadline:
                raise CommandError(f"{reason}: start a web process (`manage.py up --role web`), which migrates, "
                                   "or run `manage.py migrate` once.")
            if not said:
                self.say(f"waiting: {reason}; a web process migrates it")
                said = True
            time.sleep(2)

    def run_steps(self, moment: lifecycle.Moment, *, fatal: bool = False) -> None:
        """Run the apps' steps for this moment (see a4ps_site.lifecycle), printing what they report."""
        for name, step in lifecycle.steps(moment):
            try:
                line = step()
            except Exception as exc:
                if fatal:
                    raise CommandError(f"{name}: {exc}") from exc
                self.say(f"{name} failed: {exc}")  # never block a shutdown on one step
                continue
            for part in (line or "").splitlines():
                self.say(part)

    def say(self, msg: str) -> None:
        self.stdout.write(f"[a4ps] {msg}")
        self.stdout.flush()

    def ensure_admin(self) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("A4PS_ADMIN_USER", "admin")
        password = os.environ.get("A4PS_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            banner = "=" * 64
            self.stdout.write(
                f"{banner}\nFirst admin user created — this password is shown only once:\n"
                f"  username: {username}\n  password: {password}\n"
                f"(change it later with: python manage.py changepassword {username})\n{banner}"
            )
        else:
            self.say(f"admin user {username!r} created from A4PS_ADMIN_USER/A4PS_ADMIN_PASSWORD")

    def wait_until_serving(self, host: str, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_children()
            try:
                with socket.create_connection((host.strip("[]"), port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise CommandError(f"daphne did not start listening on {host}:{port} within {timeout:.0f}s")

    def check_children(self) -> None:
        """Restart a child that exited (after a pause that doubles with each recent crash); stop the
        product when one crashes CRASH_LIMIT times within CRASH_WINDOW_S."""
        for i, (name, proc) in enumerate(list(self.children)):
            if proc.poll() is None or self.stopping:
                continue
            code = proc.returncode
            now = time.monotonic()
            recent = [t for t in self.crashes.get(name, []) if now - t < CRASH_WINDOW_S] + [now]
            self.crashes[name] = recent
            if len(recent) >= CRASH_LIMIT or name not in self.starters:
                raise CommandError(
                    f"the {name} process exited {len(recent)} times within {CRASH_WINDOW_S:.0f} s (last code {code}); "
                    "stopping. Its log lines above say why." if len(recent) >= CRASH_LIMIT else
                    f"the {name} process exited unexpectedly (code {code}); stopping.")
            pause = 2 ** (len(recent) - 1)
            self.say(f"the {name} process exited (code {code}): restarting it in {pause} s "
                     f"(crash {len(recent)} of {CRASH_LIMIT} allowed within {CRASH_WINDOW_S:.0f} s)")
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.1)
            if self.stopping:
                return
            try:
                self.children[i] = (name, self.starters[name]())
            except broker.BrokerError as exc:
                raise CommandError(f"the {name} process could not be restarted: {exc}") from None
            self.say(f"{name} restarted")
            for step_name, step in lifecycle.steps("restarted"):
                try:
                    line = step(name=name, code=code)
                except Exception as exc:  # the restart stands; the record of it is best effort
                    self.say(f"{step_name} failed: {exc}")
                    continue
                if line:
                    self.say(line)

    def supervise(self) -> None:
        while not self.stopping:
            self.check_children()
            time.sleep(0.5)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            self.say(f"{signal.Signals(signum).name} received: stopping")
        self.stopping = True

    def stop_all(self) -> None:
        """Stop children newest first (web, worker, then broker) so in-flight work can finish."""
        if self.children and not self.stopping_steps_done and self.serves:
            self.stopping_steps_done = True
            self.run_steps("stopping")
        self.stopping = True
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                # Huey finishes running tasks on SIGINT; daphne and valkey shut down on SIGTERM.
                proc.send_signal(signal.SIGINT if name == "worker" else signal.SIGTERM)
                try:
                    proc.wait(timeout=20 if name == "worker" else 10)
                except subprocess.TimeoutExpired:
                    self.say(f"{name} did not stop in time: killing it")
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if self.children:
            self.say("stopped")
        self.children = []
