"""The system-log websocket: login required, origin checked, live events and catch-up."""
from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from a4ps_site.asgi import application
from personas.events import event_publish

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


@database_sync_to_async
def _session_cookie(username: str = "ws-user") -> bytes:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password="pw-123456789")
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


@database_sync_to_async
def _publish(kind: str, message: str):
    return event_publish(kind=kind, source="test", payload={"message": message})


async def test_anonymous_socket_is_refused():
    communicator = WebsocketCommunicator(application, "/ws/events/", headers=[ORIGIN])
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


async def test_foreign_origin_is_refused_even_when_logged_in():
    cookie = await _session_cookie()
    communicator = WebsocketCommunicator(
        application, "/ws/events/", headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie)]
    )
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


async def test_logged_in_socket_receives_published_events_and_catches_up():
    cookie = await _session_cookie()
    earlier = await _publish("test.before", "published before the page connected")
    communicator = WebsocketCommunicator(application, "/ws/events/", headers=[ORIGIN, (b"cookie", cookie)])
    connected, _ = await communicator.connect()
    assert connected

    await _publish("test.live", "hello from the test")
    html = await communicator.receive_from(timeout=5)
    assert 'hx-swap-oob="afterbegin"' in html and 'id="event-log"' in html
    assert "test.live" in html and "hello from the test" in html

    # A reconnecting page asks for what it missed after the newest event it shows.
    await communicator.send_to(text_data=json.dumps({"resume_after": earlier.pk - 1}))
    replay = [await communicator.receive_from(timeout=5) for _ in range(2)]
    assert "published before the page connected" in replay[0]
    assert "hello from the test" in replay[1]
    await communicator.send_to(text_data="not json")
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


def test_a_broker_that_is_down_never_fails_the_write(settings, caplog):
    from personas.models import Event

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                                           "CONFIG": {"hosts": [{"address": "unix:///nonexistent/broker.sock"}]}}}
    event = event_publish(kind="test.offline", source="test", payload={"message": "kept"})
    assert Event.objects.filter(pk=event.pk, kind="test.offline").exists()
    assert "not sent" in caplog.text
