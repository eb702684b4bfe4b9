"""A small JSON API for scripts: submit a task, read a run with its steps.

Authentication: the browser session (with CSRF on writes) or `Authorization: Bearer <token>`
(tokens are made with `manage.py create_api_token USER NAME`; only their hash is stored).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from personas import runs, selectors
from personas.models import ApiToken, Run


def hash_token(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_error(status: int, message: str, **extra: Any) -> JsonResponse:
    """A JSON error body {"error": message} with the status; every API of the project answers errors so."""
    return JsonResponse({"error": message, **extra}, status=status)


def api_auth(view: Callable) -> Callable:
    """Token or session authentication; session writes must pass the CSRF check."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any):
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(header[7:].strip())).first()
            if token is None or not token.user.is_active:
                return api_error(401, "Invalid API token.")
            ApiToken.objects.filter(pk=token.pk).update(last_used=timezone.now())
            request.user = token.user
        elif request.user.is_authenticated:
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                reason = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
                if reason is not None:
                    return api_error(403, "CSRF check failed: send the X-CSRFToken header, or use a bearer token.")
        else:
            request.user = AnonymousUser()
            return api_error(401, "Authentication required: log in or send 'Authorization: Bearer <token>'.")
        try:
            return view(request, *args, **kwargs)
        except RequestDataTooBig:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return api_error(413, f"The body is larger than the {limit:,} bytes a request may carry.")

    return wrapper


def json_text_field(request: HttpRequest, field: str, *, example: str) -> str | JsonResponse:
    """The text of `field` in a JSON object body, or the 400 that says what a script should send."""
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return api_error(400, "The body is not valid JSON.")
    if not isinstance(body, dict) or not isinstance(body.get(field), str):
        return api_error(400, f'Send a JSON object like {{"{field}": "{example}"}}.')
    return str(body[field])


def run_json(run: Run, *, steps: bool = False) -> dict[str, Any]:
    data = {
        "id": run.pk, "task": run.task, "source": run.source, "status": run.status,
        "created": run.created.isoformat(), "started": run.started.isoformat() if run.started else None,
        "finished": run.finished.isoformat() if run.finished else None, "duration_s": run.duration_s,
        "final_answer": run.final_answer, "error": run.error, "max_dissonance": run.max_dissonance,
        "options": run.options, "parent": run.parent_id,
    }
    answer = run.answer_step() if run.final_answer else None
    cites = answer.data if answer else {}
    # Numbered as the answer cites them ([n]); "uncited": the run retrieved sources and the answer cites none.
    data["sources"] = cites.get("sources", [])
    data["citations"] = {"cited": cites.get("cited", []), "attributed": cites.get("attributed", []),
                         "uncited": bool(cites.get("uncited", False))}
    if steps:
        data["steps"] = [
            {"seq": s.seq, "node": s.node, "persona": s.persona, "kind": s.kind, "content": s.content,
             "dissonance": s.dissonance, "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
             "model_ms": s.model_ms, "duration_ms": s.duration_ms, "data": s.data, "created": s.created.isoformat()}
            for s in selectors.run_steps(run=run)
        ]
    return data


@api_auth
def runs_collection(request: HttpRequest) -> JsonResponse:
    if request.method == "GET":
        recent = selectors.runs_page()[:50]
        return JsonResponse({"runs": [run_json(r) for r in recent]})
    if request.method != "POST":
        return api_error(405, "Use GET to list runs or POST to submit a task.")
    task = json_text_field(request, "task", example="...")
    if isinstance(task, JsonResponse):
        return task
    body = json.loads(request.body)  # valid: json_text_field read it
    parent = None
    if body.get("parent") is not None:
        parent = Run.objects.filter(pk=body["parent"]).first() if isinstance(body["parent"], int) else None
        if parent is None:
            return api_error(400, f"parent must be the id of an existing run, not {body['parent']!r}.")
    try:
        run = runs.run_submit(task=task, user=request.user, options=body.get("options"), parent=parent)
    except ValueError as exc:
        return api_error(400, str(exc))
    return JsonResponse(run_json(run), status=201)


@api_auth
def run_item(request: HttpRequest, run_id: int) -> JsonResponse:
    if request.method != "GET":
        return api_error(405, "Runs are read-only here; cancel one from its page.")
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return api_error(404, f"No run #{run_id}.")
    return JsonResponse(run_json(run, steps=True))
