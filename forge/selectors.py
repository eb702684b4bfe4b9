"""Reads of the forge app."""
from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.db.models import Count, QuerySet
from django.template.loader import render_to_string

from forge import registry as registry_mod
from forge import sandbox
from forge.config import forge_settings
from forge.models import ForgeAttempt, ForgeRequest, Tool, ToolCall, ToolVersion


def tools_list() -> QuerySet[Tool]:
    return Tool.objects.select_related("current_version").annotate(n_versions=Count("versions")).order_by("name")


def tool_standings() -> dict[str, str]:
    """Enabled tools BRICK is not offered, with why (registry.standings)."""
    return registry_mod.standings(registry_mod.registry().tools())


def tool_versions(*, tool: Tool) -> list[ToolVersion]:
    return list(tool.versions.order_by("-number").annotate(n_calls=Count("calls")))


def tool_calls_recent(*, tool: Tool, limit: int = 30) -> list[ToolCall]:
    return list(ToolCall.objects.filter(tool_version__tool=tool).select_related("tool_version").order_by("-id")[:limit])


def forge_requests_recent(*, limit: int = 20) -> list[ForgeRequest]:
    return list(ForgeRequest.objects.select_related("tool_version__tool").order_by("-id")[:limit])


def forge_request_exists(*, request_id: int) -> bool:
    return ForgeRequest.objects.filter(pk=request_id).exists()


def forge_attempts(*, request: ForgeRequest) -> list[ForgeAttempt]:
    return list(request.attempts.order_by("number"))


def forge_attempts_html_after(*, request_id: int, after_number: int) -> list[str]:
    """Attempts a reconnecting request page missed, as they were broadcast, plus the current header."""
    attempts = ForgeAttempt.objects.filter(request_id=request_id, number__gt=after_number).order_by("number")
    html = [render_to_string("forge/_attempt_oob.html", {"attempt": a}) for a in attempts]
    request = ForgeRequest.objects.select_related("tool_version__tool").get(pk=request_id)
    html.append(render_to_string("forge/_request_head.html", {"req": request, "oob": True}))
    return html


def sandbox_status() -> dict:
    """The sandbox backends with why each is (not) available, and the one tool code runs in."""
    preference = forge_settings().backend
    try:
        chosen = sandbox.select_backend(preference).name
        problem = ""
    except sandbox.SandboxError as exc:
        chosen, problem = "", str(exc)
    return {"backends": sandbox.available_backends(), "chosen": chosen, "preference": preference, "problem": problem,
            "pools": warm_pools()}


def pool_status_dir() -> Path:
    """Where each worker keeps the status of its warm pool, one file per worker pid."""
    return Path(settings.VAR_DIR) / "sandbox-pools"


def selftest_path() -> Path:
    """The last sandbox self-test, as the worker running it writes it after every attack."""
    return Path(settings.VAR_DIR) / "sandbox-selftest.json"


def warm_pools() -> list[dict]:
    """Each live worker's warm pool (from the status file it keeps); files of dead workers are dropped."""
    found = []
    folder = pool_status_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
            pid = int(status.get("pid", 0))
        except (OSError, ValueError):
            continue
        if pid <= 0 or not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)
            continue
        found.append(status)
    return found



def selftest_latest() -> dict | None:
    """The last sandbox self-test (queued, running or finished); a run whose worker died is marked stale."""
    path = selftest_path()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pid = int(state.get("pid") or 0)
    if state.get("status") == "running" and pid and not Path(f"/proc/{pid}").exists():
        state["stale"] = True
    return state
