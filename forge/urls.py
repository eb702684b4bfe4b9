"""URLs of the forge app."""
from django.urls import path

from forge import views

urlpatterns = [
    path("", views.forge_home, name="forge"),
    path("submit/", views.forge_submit, name="forge_submit"),
    path("requests/<int:request_id>/", views.forge_request_detail, name="forge_request"),
    path("tools/<slug:name>/", views.tool_detail, name="forge_tool"),
    path("tools/<slug:name>/toggle/", views.tool_toggle, name="forge_tool_toggle"),
    path("tools/<slug:name>/rollback/", views.tool_rollback, name="forge_tool_rollback"),
    path("tools/<slug:name>/try/", views.tool_try, name="forge_tool_try"),
]
