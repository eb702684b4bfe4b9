"""Test settings: the real settings module with a scratch var/, an in-process channel layer and
Huey in immediate mode. Tests that need the real broker start one (see tests/livestack.py)."""
import atexit
import os
import shutil
import tempfile

if "A4PS_VAR_DIR" not in os.environ:  # a process of the suite's own inherits its parent's
    os.environ["A4PS_VAR_DIR"] = tempfile.mkdtemp(prefix="a4ps-test-var-")
    atexit.register(shutil.rmtree, os.environ["A4PS_VAR_DIR"], ignore_errors=True)
os.environ.setdefault("A4PS_CHANNEL_LAYER", "memory")
os.environ.setdefault("A4PS_HUEY_IMMEDIATE", "true")

from a4ps_site.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
