"""A4PS Django project package: settings, ASGI entry, URLs, realtime helper and broker wiring."""
