"""URLs of the forge app."""
from django.urls import path

from forge import views
from forge.evals import views as eval_views

urlpatterns = [
    path("", views.forge_home, name="forge"),
    path("submit/", views.forge_submit, name="forge_submit"),
    path("requests/<int:request_id>/", views.forge_request_detail, name="forge_request"),
    path("requests/<int:request_id>/overrule/", views.forge_request_overrule, name="forge_request_overrule"),
    path("sandbox/selftest/", views.sandbox_selftest, name="sandbox_selftest"),
    path("sandbox/selftest/start/", views.sandbox_selftest_start, name="sandbox_selftest_start"),
    path("tools/<slug:name>/", views.tool_detail, name="forge_tool"),
    path("tools/<slug:name>/toggle/", views.tool_toggle, name="forge_tool_toggle"),
    path("tools/<slug:name>/offer/", views.tool_offer, name="forge_tool_offer"),
    path("tools/<slug:name>/rollback/", views.tool_rollback, name="forge_tool_rollback"),
    path("tools/<slug:name>/try/", views.tool_try, name="forge_tool_try"),
    path("tools/<slug:name>/delete/", views.tool_delete, name="forge_tool_delete"),
    path("evals/", eval_views.evals, name="evals"),
    path("evals/compare/", eval_views.eval_compare, name="eval_compare"),
    path("evals/<int:run_id>/", eval_views.eval_run, name="eval_run"),
    path("evals/<int:run_id>/cancel/", eval_views.eval_run_cancel, name="eval_run_cancel"),
    path("evals/<int:run_id>/items/<str:item_id>/", eval_views.eval_item, name="eval_item"),
]
