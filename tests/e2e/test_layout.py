"""In a real browser: the dashboard, a run page and a fine-tune page fit a 1280 px and an 800 px wide
window — nothing sticks out sideways. Screenshots go to $A4PS_SCREENSHOTS (for the README's tour) or
to the stack's scratch dir."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.test_live_log import login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]

OVERFLOWING = """() => {
    const width = document.documentElement.clientWidth;
    const out = [];
    for (const el of document.querySelectorAll('main *, header.topbar *')) {
        const r = el.getBoundingClientRect();
        if (r.width && r.right > width + 1 && !el.closest('.graph-svg, pre, .log, table')) {
            out.push(el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className + ' right=' + Math.round(r.right));
        }
    }
    return {scroll: document.documentElement.scrollWidth, width, out: out.slice(0, 5)};
}"""


def test_pages_fit_wide_and_narrow_windows(browser, scripted_stack):
    long_kind = "forge.request.with_a_long_event_kind.that_overlapped.the_source"  # 64 at most
    run_id = scripted_stack.submit("What is 2 + 2? Then explain it in a Markdown list.")
    scripted_stack.wait_for("select status from personas_run where id=?", (run_id,), until=lambda r: r[0] == "done")
    job_id = int(scripted_stack.manage("shell", "-c", (
        "from django.utils import timezone; from memory.finetunes.models import FineTuneJob; "
        "from personas.events import event_publish; "
        f"event_publish(kind={long_kind!r}, source='a-rather-long-source-name', payload={{'message': 'x' * 300}}); "
        "j = FineTuneJob.objects.create(persona='BRICK', status='succeeded', finished=timezone.now(), "
        "base_model='/a/very/long/path/' + 'to-a-model-directory-' * 8 + 'model.gguf', "
        "adapter_path='/var/lib/a4ps/finetune/' + 'x' * 120 + '/adapter', examples=12); print(j.pk)"
    )).stdout.strip().splitlines()[-1])
    scripted_stack.manage("shell", "-c", (  # one tool BRICK is offered, one it is not (and why)
        "from forge.services import tool_version_create as make; "
        "make(name='add_two', tests='', spec='add', "
        "code='def add_two(a: int, b: int) -> int:\\n    \"\"\"Add.\"\"\"\\n    return a + b\\n'); "
        "make(name='forge_note', tests='', spec='junk', "
        "code='def forge_note(spec: str) -> str:\\n    \"\"\"Note.\"\"\"\\n    return \"gave up\"\\n')"))
    scripted_stack.manage("shell", "-c", (  # a document with a long name that failed with a long reason
        "from memory.documents.models import Document; "
        "Document.objects.create(name='minutes-of-the-annual-general-meeting-' * 4 + '.pdf', kind='pdf', size=10, "
        "sha256='ab' * 32, status='failed', error='the PDF could not be read (' + 'x' * 200 + ')')"))
    shots = Path(os.environ.get("A4PS_SCREENSHOTS") or scripted_stack.var_dir)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        pages = {"dashboard": "/", "run": f"/runs/{run_id}/", "finetune": f"/memory/finetunes/{job_id}/",
                 "models": "/models/", "forge": "/forge/", "documents": "/memory/documents/"}
        for width in (1280, 800):
            page.set_viewport_size({"width": width, "height": 900})
            for name, path in pages.items():
                page.goto(scripted_stack.url + path)
                expect(page.locator("main")).to_be_visible()
                if name == "run":
                    expect(page.locator("#run-head")).to_have_attribute("data-status", "done")
                if name == "models":
                    expect(page.locator("#embedded-models select")).to_have_count(4)
                if name == "documents":
                    expect(page.locator("#document-rows")).to_contain_text("failed")
                if name == "forge":
                    expect(page.locator("#tool-row-add_two .offered")).to_have_text("yes")
                    expect(page.locator("#tool-row-forge_note .offered")).to_contain_text("ignores its input")
                found = page.evaluate(OVERFLOWING)
                assert found["scroll"] <= found["width"] + 1 and not found["out"], (name, width, found)
                page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=width == 1280)
        page.goto(scripted_stack.url + "/")
        expect(page.locator("#event-log")).to_contain_text("forge.request.with_a_long_event_kind")
    finally:
        page.close()
