"""Test settings: the real settings module with a scratch var/, an in-process channel layer and
Huey in immediate mode. Tests that need the real broker start one (see tests/livestack.py)."""
import os
import tempfile

os.environ.setdefault("A4PS_VAR_DIR", tempfile.mkdtemp(prefix="a4ps-test-var-"))
os.environ.setdefault("A4PS_CHANNEL_LAYER", "memory")
os.environ.setdefault("A4PS_HUEY_IMMEDIATE", "true")

from a4ps_site.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
