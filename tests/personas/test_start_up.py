"""What the supervisor says at start-up comes from the steps the apps register."""
from __future__ import annotations

import pytest

from a4ps_site import lifecycle

pytestmark = pytest.mark.django_db


def test_start_up_says_which_model_backend_answers_and_why():
    steps = dict(lifecycle.steps("serving"))
    line = steps["say which model backend answers"]()
    assert line.startswith("model backend: embedded (") and "did not answer" in line  # no Ollama here


def test_the_living_image_steps_are_registered_for_start_and_shutdown():
    assert "restore the living image" in dict(lifecycle.steps("broker_up"))
    assert "save the living image" in dict(lifecycle.steps("stopping"))
