"""The living image: round trip, atomic saves, fallback past a corrupt image, restore, inspector."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.urls import reverse

from memory import image as living
from memory import imagefile
from memory.services import memory_store
from personas import runs
from personas.models import Event, Persona

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def test_round_trip_keeps_the_live_state(personas_seeded, scripted_model):
    Persona.objects.filter(name="BRICK").update(state={"mood": "resolute", "theses": 12})
    saved = living.image_save(reason="test")
    contents = imagefile.read_image(saved.path)
    assert contents["personas"]["BRICK"] == {"mood": "resolute", "theses": 12}
    assert contents["codex"]["version"] == 1 and "BRICK" in contents["codex"]["text"]
    assert set(contents["memory_versions"]) == {"summaries", "chunks"}
    assert contents["reason"] == "test" and contents["motivator"]["autonomy"] in {"ask", "auto"}
    assert Event.objects.filter(kind="image.saved").exists()


def test_only_the_newest_k_images_are_kept(personas_seeded, scripted_model, monkeypatch):
    monkeypatch.setattr(living, "image_settings", lambda: {"interval_min": 15, "keep": 2})
    for _ in range(4):
        living.image_save()
    assert len(imagefile.list_images(living.image_dir())) == 2
    assert living.image_save_if_due() is None  # the newest is younger than the interval


def test_a_kill_during_save_leaves_the_previous_image_intact(tmp_path):
    good = imagefile.write_image(tmp_path, imagefile.dumps({"n": 1}))
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from memory.imagefile import write_image\n"
        "def slow():\n"
        "    for _ in range(10_000):\n"
        "        yield b'x' * 65536\n"
        "        time.sleep(0.001)\n"
        f"write_image(Path({str(tmp_path)!r}), slow())\n")], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".image-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # well into the write
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    images = imagefile.list_images(tmp_path)
    assert [i.name for i in images] == [good.name]
    assert imagefile.read_image(good.path) == {"n": 1}
    assert list(tmp_path.glob(".image-*"))  # the half-written temp file is not an image
    imagefile.prune(tmp_path, keep=5)
    assert not list(tmp_path.glob(".image-*"))


def test_a_corrupt_newest_image_falls_back_with_a_visible_warning(personas_seeded, scripted_model, auth_client):
    Persona.objects.filter(name="ROBIN").update(state={"mood": "warm"})
    living.image_save()
    Persona.objects.filter(name="ROBIN").update(state={"mood": "bitter"})
    newest = living.image_save()
    raw = bytearray(newest.path.read_bytes())
    raw[-5] ^= 0xFF
    newest.path.write_bytes(bytes(raw))
    Persona.objects.filter(name="ROBIN").update(state={"mood": "lost"})
    result = living.image_restore_on_start()
    assert result["image"] != newest.name and "checksum mismatch" in result["warnings"][0]
    assert Persona.objects.get(name="ROBIN").state == {"mood": "warm"}
    assert Event.objects.filter(kind="image.warning").exists()
    page = auth_client.get(reverse("image")).content.decode()
    assert "Unreadable" in page and "checksum mismatch" in page
    home = auth_client.get(reverse("dashboard")).content.decode()
    assert "Falling back to an older image" in home


def test_restore_rolls_memory_codex_and_persona_state_back(personas_seeded, scripted_model, user, auth_client,
                                                          config_dir):
    config = config_dir
    scripted_model.rules["answer"] = "Kept before the snapshot."
    runs.run_submit(task="First question", user=user)
    Persona.objects.filter(name="BABS").update(state={"searches": 1})
    snapshot = living.image_save()
    scripted_model.rules["answer"] = "Written after the snapshot."
    runs.run_submit(task="Second question", user=user)
    Persona.objects.filter(name="BABS").update(state={"searches": 2})
    from personas.codex import amendment_approve, amendment_propose

    amendment_approve(amendment=amendment_propose(persona="BABS", principle="Cite dates.", rationale="r",
                                                  evidence=[]), by=user)
    assert memory_store().count(level=1) == 2

    response = auth_client.post(reverse("image_restore"), {"name": snapshot.name})
    assert response.status_code == 302
    assert memory_store().count(level=1) == 1
    assert "Kept before the snapshot." in memory_store().list_summaries()[0].summary
    assert Persona.objects.get(name="BABS").state == {"searches": 1}
    assert "Cite dates." not in (config / "codex.toml").read_text()
    bad = auth_client.post(reverse("image_restore"), {"name": "../../etc/passwd"}, follow=True)
    assert "Nothing was restored" in bad.content.decode()


def test_inspector_edits_a_personas_state_and_rejects_bad_json(personas_seeded, auth_client):
    url = reverse("persona_state_edit", args=["ALFRED"])
    auth_client.post(url, {"state": '{"mood": "vigilant", "patience": 3}'})
    assert Persona.objects.get(name="ALFRED").state == {"mood": "vigilant", "patience": 3}
    bad = auth_client.post(url, {"state": '{"mood": '})
    assert bad.status_code == 400 and "not valid JSON" in bad.content.decode()
    assert '{&quot;mood&quot;: ' in bad.content.decode()  # what was typed is kept
    assert Persona.objects.get(name="ALFRED").state == {"mood": "vigilant", "patience": 3}
    assert auth_client.post(reverse("persona_state_edit", args=["NOBODY"]), {"state": "{}"}).status_code == 404
