"""URLs of the personas app."""
from django.urls import path

from personas import api, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("events/", views.event_log, name="events"),
    path("runs/", views.runs, name="runs"),
    path("runs/submit/", views.run_submit, name="run_submit"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:run_id>/follow-up/", views.run_follow_up, name="run_follow_up"),
    path("models/", views.models_page, name="models"),
    path("models/pull/", views.model_pull, name="model_pull"),
    path("codex/", views.codex_page, name="codex"),
    path("goals/<int:goal_id>/decide/", views.goal_decide, name="goal_decide"),
    path("api/runs/", api.runs_collection, name="api_runs"),
    path("api/runs/<int:run_id>/", api.run_item, name="api_run"),
]
