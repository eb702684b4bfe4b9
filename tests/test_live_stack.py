"""The run command for real: embedded broker, Huey consumer and daphne together, then a clean stop."""
from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from tests.livestack import cleanup, start_stack

pytestmark = pytest.mark.stack


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry))
            except (OSError, IndexError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_run_command_serves_and_stops_cleanly_without_orphans():
    stack = start_stack()
    try:
        children = _children_of(stack.proc.pid)
        assert len(children) == 3  # broker, worker, web
        with urllib.request.urlopen(stack.url + "/accounts/login/", timeout=10) as resp:
            assert resp.status == 200 and b"Log in" in resp.read()
        assert (stack.var_dir / "broker.sock").exists()
        assert "fork" not in stack.log().lower(), stack.log()  # no fork-safety warnings at start
        assert stack.stop(signal.SIGINT) == 0
        time.sleep(0.5)
        assert [pid for pid in children if _alive(pid)] == []
        assert "stopped" in stack.log() and "living image saved" in stack.log()

        # Starting again on the same var/ restores the live state from the image just saved.
        again = start_stack(stack.var_dir)
        assert "live state restored from image-" in again.log()
        with urllib.request.urlopen(again.url + "/accounts/login/", timeout=10) as resp:
            assert resp.status == 200
        assert again.stop(signal.SIGTERM) == 0
    finally:
        cleanup(stack)


def test_children_die_with_a_killed_supervisor():
    stack = start_stack()
    try:
        children = _children_of(stack.proc.pid)
        stack.proc.send_signal(signal.SIGKILL)
        stack.proc.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in children):
            time.sleep(0.2)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        cleanup(stack)


def test_second_start_on_a_busy_port_fails_clearly(live_stack, monkeypatch):
    from tests import livestack

    made: list[str] = []
    mkdtemp = livestack.tempfile.mkdtemp
    monkeypatch.setattr(livestack.tempfile, "mkdtemp", lambda *a, **kw: made.append(mkdtemp(*a, **kw)) or made[-1])
    with pytest.raises(RuntimeError, match="already in use"):
        livestack.start_stack(extra_env={"A4PS_PORT": str(live_stack.port)}, timeout=60)
    assert len(made) == 1 and not Path(made[0]).exists()  # the scratch dir of the start that failed is gone


@pytest.mark.django_db(transaction=True)
async def test_event_from_a_huey_task_reaches_a_socket_through_the_real_broker(live_stack, settings):
    """The worker process publishes; the broker carries it to a consumer in this process."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": live_stack.broker_url}]},
        }
    }
    from a4ps_site.asgi import application

    @sync_to_async
    def cookie() -> bytes:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(username="broker-user", password="pw-123456789")
        c = Client()
        c.force_login(user)
        return f"{settings.SESSION_COOKIE_NAME}={c.cookies[settings.SESSION_COOKIE_NAME].value}".encode()

    communicator = WebsocketCommunicator(
        application, "/ws/events/", headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", await cookie())]
    )
    connected, _ = await communicator.connect()
    assert connected
    await sync_to_async(live_stack.publish_from_worker)("test.broker", "carried by the real broker")
    received = []
    while not any("test.broker" in m for m in received):  # other live updates may come first
        received.append(await communicator.receive_from(timeout=30))
    assert "carried by the real broker" in received[-1]
    assert "Executing personas.tasks.publish_event" in live_stack.log()
    await communicator.disconnect()
