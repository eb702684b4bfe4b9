"""URLs of the personas app."""
from django.urls import path

from personas import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("events/", views.event_log, name="events"),
    path("runs/", views.runs, name="runs"),
    path("models/", views.models_page, name="models"),
    path("codex/", views.codex_page, name="codex"),
]
