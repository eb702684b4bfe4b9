"""A Huey consumer whose ModelManager is the scripted model (for integration tests of the worker).

    python -m tests.scripted_worker      # env: the stack's, plus SCRIPTED_DELAY seconds per call
"""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "a4ps_site.settings")
django.setup()

from django.core.management import call_command  # noqa: E402

from personas.llm import set_model_manager  # noqa: E402
from tests.personas.scripted import ScriptedModel  # noqa: E402

set_model_manager(ScriptedModel(delay_s=float(os.environ.get("SCRIPTED_DELAY", "0"))))
call_command("run_huey")
