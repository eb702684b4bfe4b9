"""The infrastructure app: settings, config files, live updates, atomic files, broker, the supervisor.

It sits below every other app and imports none of them. Where the supervisor must run an app's step
(restore the living image once the broker is up, announce the start, save the image on shutdown),
that app registers the step in its own AppConfig.ready() through `a4ps_site.lifecycle`.
"""
from django.apps import AppConfig


class A4psSiteConfig(AppConfig):
    name = "a4ps_site"
    verbose_name = "A4PS infrastructure"
