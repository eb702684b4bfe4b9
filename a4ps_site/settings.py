"""Django settings: environment-driven with working local defaults; all state lives under var/."""
from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from a4ps_site.env import envbool, envchoice, envint, envlist, envpath, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = envpath("A4PS_VAR_DIR", BASE_DIR / "var")
CONFIG_DIR = envpath("A4PS_CONFIG_DIR", BASE_DIR / "config")
VAR_DIR.mkdir(parents=True, exist_ok=True)
# What every host of a deployment must see alike (tools, living images, fine-tune artefacts, documents,
# the memory store unless [memory] uri says otherwise, the generated secret key): var/ on one machine,
# a shared mount when web and worker processes run on several. Per-host state (sockets, model files,
# scratch, the sandbox pool) stays in VAR_DIR.
SHARED_DIR = envpath("A4PS_SHARED_DIR", VAR_DIR)
SHARED_DIR.mkdir(parents=True, exist_ok=True)

PRODUCTION = envbool("A4PS_PRODUCTION", False)
DEBUG = envbool("A4PS_DEBUG", False)  # on only when asked: 404s and 500s must not list URLs or tracebacks

_DEV_SECRET_FILE = SHARED_DIR / "secret_key"


def _secret_key() -> str:
    explicit = envstr("A4PS_SECRET_KEY").strip()
    if PRODUCTION:
        if not explicit or len(explicit) < 32 or explicit.startswith("django-insecure"):
            raise ImproperlyConfigured(
                "A4PS_PRODUCTION is on but A4PS_SECRET_KEY is missing, too short (<32 chars) or a "
                "default: set a long random value, e.g. "
                "`python3 -c \"import secrets; print(secrets.token_urlsafe(50))\"`."
            )
        return explicit
    if explicit:
        return explicit
    # A generated development secret, created once and kept under var/ (mode 0600).
    # O_EXCL: of several processes starting at once on a shared dir, one writes it and all read it.
    try:
        fd = os.open(_DEV_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    for _ in range(50):  # the writer may not have written yet
        text = _DEV_SECRET_FILE.read_text().strip()
        if text:
            return text
        time.sleep(0.02)
    raise ImproperlyConfigured(f"{_DEV_SECRET_FILE} is empty: delete it and start again.")


SECRET_KEY = _secret_key()

BIND_HOST = envstr("A4PS_HOST", "127.0.0.1")
BIND_PORT = envint("A4PS_PORT", 8000, min_value=1, max_value=65535)
ALLOWED_HOSTS = envlist("A4PS_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist(
    "A4PS_CSRF_TRUSTED_ORIGINS", [f"http://{h}:{BIND_PORT}" for h in ("127.0.0.1", "localhost")]
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "huey.contrib.djhuey",
    "a4ps_site",
    "personas",
    "forge",
    "memory",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "a4ps_site.urls"
ASGI_APPLICATION = "a4ps_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "personas.context_processors.needs_you",
            ],
        },
    },
]

_DATABASE_URL = envstr("DATABASE_URL").strip()
DATABASES: dict[str, Mapping[str, Any]]
if _DATABASE_URL:
    import dj_database_url  # only a deployment with DATABASE_URL needs the parser

    try:
        DATABASES = {"default": dj_database_url.parse(_DATABASE_URL, conn_max_age=60)}
    except Exception as exc:  # dj_database_url raises several types for malformed URLs
        raise ImproperlyConfigured(f"DATABASE_URL could not be parsed: {exc}") from None
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "a4ps.sqlite3",
            # Daphne and the Huey consumer write concurrently: WAL + immediate transactions
            # keep writers from deadlocking on lock upgrades.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One broker serves the channel layer and the task queue. Without REDIS_URL the run command
# starts a private Redis-protocol server on a unix socket under var/.
REDIS_URL = envstr("REDIS_URL").strip()
EMBEDDED_BROKER = not REDIS_URL
BROKER_SOCKET = VAR_DIR / "broker.sock"
BROKER_URL = REDIS_URL or f"unix://{BROKER_SOCKET}"
if not BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix://.")
# The broker's address for messages and logs: a password in REDIS_URL is never printed.
BROKER_URL_SAFE = re.sub(r"//[^@/]*@", "//***@", BROKER_URL)

BROKER_MAX_CONNECTIONS = envint("A4PS_BROKER_MAX_CONNECTIONS", 2000, min_value=10, max_value=100_000)
CHANNEL_LAYER_BACKEND = envchoice("A4PS_CHANNEL_LAYER", "redis", {"redis", "memory"})
CHANNEL_LAYERS: dict[str, dict[str, Any]]
if CHANNEL_LAYER_BACKEND == "memory":
    # Single-process only (unit tests): it cannot carry messages between processes.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    # Pub/sub: a group_send is one PUBLISH that each web process fans out locally, instead of one
    # queued copy per socket. A page that was offline catches up from the database (see Event).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": BROKER_URL, "max_connections": BROKER_MAX_CONNECTIONS}]},
        }
    }

HUEY = {
    "huey_class": "huey.RedisHuey",
    "name": envstr("A4PS_QUEUE_NAME", "a4ps"),
    "url": BROKER_URL,
    "immediate": envbool("A4PS_HUEY_IMMEDIATE", False),
    "utc": True,
    "consumer": {
        "workers": envint("A4PS_HUEY_WORKERS", 2, min_value=1, max_value=64),
        "worker_type": "thread",
        "periodic": True,
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("A4PS_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SESSION_COOKIE_SECURE = envbool("A4PS_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Largest task text a user may submit (characters).
# Streamed tokens and progress bars update a page at most this often (seconds).
LIVE_UPDATE_INTERVAL_S = 0.1

TASK_MAX_CHARS = envint("A4PS_TASK_MAX_CHARS", 8000, min_value=100, max_value=200_000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("A4PS_LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        # The consumer installs its own handler; propagating would print every line twice.
        "huey": {"level": "INFO", "propagate": False},
    },
}
