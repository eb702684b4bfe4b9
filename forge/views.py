"""Pages of the forge app: forge a tool, watch a request live, the tools and their versions."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from a4ps_site.http import HtmxHttpRequest
from forge import sandbox, selectors, services
from forge.forms import ForgeForm, ToolCallForm
from forge.models import ForgeRequest, Tool


def _home(request: HtmxHttpRequest, form: ForgeForm, status: int = 200) -> HttpResponse:
    tools = list(selectors.tools_list())
    standings = selectors.tool_standings()
    for tool in tools:
        tool.left_out = standings.get(tool.name, "") if tool.enabled else ""
    return render(request, "forge/forge.html", {
        "form": form, "tools": tools, "requests": selectors.forge_requests_recent(),
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
    return _request_page(request, forge_request)


def _request_page(request: HtmxHttpRequest, forge_request: ForgeRequest, *, typed: dict[int, str] | None = None,
                  problem: tuple[int, str] | None = None, status: int = 200) -> HttpResponse:
    attempts = selectors.forge_attempts(request=forge_request)
    overrulable = [a for a in attempts if a.static_ok and a.code.strip()] \
        if forge_request.status == ForgeRequest.Status.FAILED else []
    for attempt in overrulable:  # a person's rejected tests stay in their box
        attempt.typed_tests = (typed or {}).get(attempt.number, attempt.tests)
    in_form = problem is not None and problem[0] in {a.number for a in overrulable}
    return render(request, "forge/request_detail.html", {
        "req": forge_request, "attempts": attempts, "overrulable": overrulable, "problem": problem,
        "problem_alone": problem[1] if problem and not in_form else "",
    }, status=status)


@login_required
@require_POST
def forge_request_overrule(request: HtmxHttpRequest, request_id: int) -> HttpResponse:
    """Register a failed request's attempt as it is, or judged by the person's own tests."""
    forge_request = get_object_or_404(ForgeRequest, pk=request_id)
    try:
        number = int(request.POST.get("attempt", ""))
    except ValueError:
        messages.error(request, "Choose the attempt to register.")
        return redirect("forge_request", request_id=forge_request.pk)
    with_tests = request.POST.get("action") == "retest"
    tests = request.POST.get("tests", "") if with_tests else None
    if tests is not None and "\x00" in tests:
        return _request_page(request, forge_request, typed={number: tests.replace("\x00", "")},
                             problem=(number, "The tests contain a NUL character."), status=400)
    try:
        version = services.forge_request_overrule(request=forge_request, number=number, user=request.user,
                                                  tests=tests)
    except ValueError as exc:
        return _request_page(request, forge_request, typed={number: tests or ""}, problem=(number, str(exc)),
                             status=400)
    messages.success(request, f"{version} registered: {forge_request.spec[:80]}")
    return redirect("forge_tool", name=version.tool.name)


@login_required
def tool_detail(request: HtmxHttpRequest, name: str) -> HttpResponse:
    tool = get_object_or_404(Tool.objects.select_related("current_version"), name=name)
    return _tool_page(request, tool, ToolCallForm())


def _tool_page(request: HtmxHttpRequest, tool: Tool, call_form: ToolCallForm, status: int = 200,
               last_call=None) -> HttpResponse:
    return render(request, "forge/tool_detail.html", {
        "tool": tool, "version": tool.current_version, "versions": selectors.tool_versions(tool=tool),
        "left_out": selectors.tool_standings().get(tool.name, "") if tool.enabled else "",
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
def tool_offer(request: HtmxHttpRequest, name: str) -> HttpResponse:
    tool = get_object_or_404(Tool, name=name)
    services.tool_offer_again(tool=tool)
    messages.success(request, f"{name} is offered to BRICK again; it is counted idle afresh from now.")
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
def tool_delete(request: HtmxHttpRequest, name: str) -> HttpResponse:
    tool = get_object_or_404(Tool, name=name)
    versions = services.tool_delete(tool=tool, by=request.user)
    messages.success(request, f"Tool {name} deleted with its {versions} version(s) and their call records.")
    return redirect("forge")


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


# ---------------------------------------------------------------------------- the self-test
@login_required
def sandbox_selftest(request: HtmxHttpRequest) -> HttpResponse:
    """The last sandbox self-test as a matrix (attacks × backends), followed live while it runs."""
    state = selectors.selftest_latest()
    context = {"state": state, "backends": [] if request.htmx else sandbox.available_backends()}
    template = "forge/_selftest.html" if request.htmx else "forge/selftest.html"
    return render(request, template, context)


@login_required
@require_POST
def sandbox_selftest_start(request: HtmxHttpRequest) -> HttpResponse:
    """Start the self-test in a worker; a bad choice or one already running is said, nothing is lost."""
    from forge.tasks import sandbox_selftest_run

    try:
        services.selftest_start(backends=request.POST.getlist("backend"), quick=request.POST.get("quick") == "on",
                                by=str(request.user), enqueue=sandbox_selftest_run)
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect("sandbox_selftest")
