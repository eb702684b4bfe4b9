"""The forge's JSON API for scripts: POST /api/forge/ {"spec": "..."} queues a forge request and returns its
id; GET /api/forge/<id>/ gives its status, attempts and the registered tool. Same authentication as the run
API (the browser session with CSRF on writes, or `Authorization: Bearer <token>`)."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path

from forge import selectors, services
from forge.models import ForgeRequest
from personas.api import api_auth, api_error, json_text_field


def request_json(request: ForgeRequest, *, attempts: bool = False) -> dict[str, Any]:
    version = request.tool_version
    data: dict[str, Any] = {
        "id": request.pk, "spec": request.spec, "status": request.status, "phase": request.phase,
        "source": request.source, "run": request.run_id, "error": request.error,
        "created": request.created.isoformat(),
        "finished": request.finished.isoformat() if request.finished else None,
        "tool": {"name": version.tool.name, "version": version.number, "code": version.code, "tests": version.tests,
                 "schema": version.schema} if version else None,
    }
    if attempts:
        data["attempts"] = [
            {"number": a.number, "passed": a.passed, "error": a.error, "code": a.code, "checks": a.tests,
             "judge": a.stdout, "backend": a.backend, "duration_s": a.duration_s, "model_ms": a.model_ms}
            for a in selectors.forge_attempts(request=request)
        ]
    return data


@api_auth
def forge_collection(request: HttpRequest) -> JsonResponse:
    if request.method == "GET":
        return JsonResponse({"requests": [request_json(r) for r in selectors.forge_requests_recent(limit=50)]})
    if request.method != "POST":
        return api_error(405, "Use GET to list forge requests or POST to forge a tool.")
    spec = json_text_field(request, "spec", example="a function add(a, b) that returns a + b")
    if isinstance(spec, JsonResponse):
        return spec
    try:
        forge_request = services.forge_request_create(spec=spec, user=request.user)
    except ValueError as exc:
        return api_error(400, str(exc))
    return JsonResponse(request_json(forge_request), status=201)


@api_auth
def forge_item(request: HttpRequest, request_id: int) -> JsonResponse:
    if request.method != "GET":
        return api_error(405, "Forge requests are read-only here.")
    forge_request = ForgeRequest.objects.select_related("tool_version__tool").filter(pk=request_id).first()
    if forge_request is None:
        return api_error(404, f"No forge request #{request_id}.")
    return JsonResponse(request_json(forge_request, attempts=True))


urlpatterns = [
    path("", forge_collection, name="api_forge"),
    path("<int:request_id>/", forge_item, name="api_forge_request"),
]
