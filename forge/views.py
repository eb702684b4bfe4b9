"""Pages of the forge app: forge a tool, watch a request live, the tools and their versions."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from a4ps_site.http import HtmxHttpRequest
from forge import selectors, services
from forge.forms import ForgeForm, ToolCallForm
from forge.models import ForgeRequest, Tool


def _home(request: HtmxHttpRequest, form: ForgeForm, status: int = 200) -> HttpResponse:
    return render(request, "forge/forge.html", {
        "form": form, "tools": selectors.tools_list(), "requests": selectors.forge_requests_recent(),
        "sandbox": selectors.sandbox_status(),
    }, status=status)


@login_required
def forge_home(request: HtmxHttpRequest) -> HttpResponse:
    return _home(request, ForgeForm())


@login_required
@require_POST
def forge_submit(request: HtmxHttpRequest) -> HttpResponse:
    """Queue a spec for the forge and go to its live page; a bad spec is shown with the text kept."""
    form = ForgeForm(request.POST)
    if form.is_valid():
        try:
            forge_request = services.forge_request_create(spec=form.cleaned_data["spec"], user=request.user)
        except ValueError as exc:
            form.add_error("spec", str(exc))
        else:
            return redirect("forge_request", request_id=forge_request.pk)
    if request.htmx:
        return render(request, "forge/_forge_form.html", {"form": form}, status=422)
    return _home(request, form, status=400)


@login_required
def forge_request_detail(request: HtmxHttpRequest, request_id: int) -> HttpResponse:
    forge_request = get_object_or_404(ForgeRequest.objects.select_related("tool_version__tool", "run"), pk=request_id)
    return render(request, "forge/request_detail.html", {
        "req": forge_request, "attempts": selectors.forge_attempts(request=forge_request),
    })


@login_required
def tool_detail(request: HtmxHttpRequest, name: str) -> HttpResponse:
    tool = get_object_or_404(Tool.objects.select_related("current_version"), name=name)
    return _tool_page(request, tool, ToolCallForm())


def _tool_page(request: HtmxHttpRequest, tool: Tool, call_form: ToolCallForm, status: int = 200,
               last_call=None) -> HttpResponse:
    return render(request, "forge/tool_detail.html", {
        "tool": tool, "version": tool.current_version, "versions": selectors.tool_versions(tool=tool),
        "calls": selectors.tool_calls_recent(tool=tool), "call_form": call_form, "last_call": last_call,
    }, status=status)


@login_required
@require_POST
def tool_toggle(request: HtmxHttpRequest, name: str) -> HttpResponse:
    tool = get_object_or_404(Tool, name=name)
    services.tool_set_enabled(tool=tool, enabled=request.POST.get("enabled") == "1")
    return redirect("forge_tool", name=tool.name)


@login_required
@require_POST
def tool_rollback(request: HtmxHttpRequest, name: str) -> HttpResponse:
    tool = get_object_or_404(Tool, name=name)
    try:
        services.tool_rollback(tool=tool, number=int(request.POST.get("number", "0")))
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect("forge_tool", name=tool.name)


@login_required
@require_POST
def tool_try(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """Call the tool from its page (in the sandbox, like any call) and show the result."""
    tool = get_object_or_404(Tool.objects.select_related("current_version"), name=name)
    form = ToolCallForm(request.POST)
    if not form.is_valid():
        return _tool_page(request, tool, form, status=400)
    call = services.tool_call(name=tool.name, arguments=form.cleaned_data["arguments"])
    if call is None:
        messages.error(request, f"{tool.name} is disabled: enable it to call it.")
        return redirect("forge_tool", name=tool.name)
    return _tool_page(request, tool, form, last_call=call)
