"""In a real browser: add a document to the library, watch it being indexed, ask about it and follow the
answer's citation to the chunk it came from."""
from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.test_live_log import login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def test_upload_a_document_ask_about_it_and_open_the_cited_chunk(browser, scripted_stack):
    token = uuid.uuid4().hex[:8]  # a file the library has not seen in this stack
    handbook = (f"# Quillfeather Allotments Handbook {token}\n\n## Sheds\n\nLadders are kept in shed B. "
                "The shed code is 5512, changed every spring.\n\n## Water\n\nTaps are open from 06:00 to 21:00.\n")
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.goto(scripted_stack.url + "/memory/documents/")
        expect(page.locator("#drop-zone")).to_be_visible()
        page.set_input_files("#file-input", files=[
            {"name": "quillfeather.md", "mimeType": "text/markdown", "buffer": handbook.encode()},
            {"name": "empty.txt", "mimeType": "text/plain", "buffer": b""},
        ])
        done = page.locator('#upload-list li[data-file="quillfeather.md"]')
        expect(done).to_have_attribute("data-state", "done", timeout=20000)
        refused = page.locator('#upload-list li[data-file="empty.txt"]')
        expect(refused).to_have_attribute("data-state", "refused")
        expect(refused).to_contain_text("the file is empty")
        # A file dropped on the zone goes the same way.
        dropped = page.evaluate_handle("""() => {
            const data = new DataTransfer();
            data.items.add(new File(["Dropped notes: the orchard gate code is 2208."], "dropped.txt",
                                    {type: "text/plain"}));
            return data;
        }""")
        page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
        expect(page.locator('#upload-list li[data-file="dropped.txt"]')).to_have_attribute("data-state", "done",
                                                                                           timeout=20000)
        # The row follows the indexing job to its end without a reload.
        row = page.locator("#document-rows tr", has_text=f"Quillfeather Allotments Handbook {token}")
        expect(row).to_have_attribute("data-status", "indexed", timeout=60000)
        page.screenshot(path=str(scripted_stack.var_dir / "documents-page.png"), full_page=True)

        page.goto(scripted_stack.url + "/")
        page.fill("#id_task", "According to the library, what is the code of the shed where the ladders are kept?")
        page.click("#task-form button[type=submit]")
        run_link = page.locator("#task-form .ok a")
        expect(run_link).to_contain_text(re.compile(r"run #\d+"), timeout=10000)
        run_link.click()
        expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
        expect(page.locator("#run-head")).to_have_attribute("data-status", "done", timeout=60000)
        answer = page.locator("#run-head .final-answer")
        expect(answer).to_contain_text("5512")
        expect(page.locator("#run-sources")).to_contain_text(f"Quillfeather Allotments Handbook {token}")
        citation = answer.locator('.md sup.cite a[data-source="1"]')
        expect(citation).to_have_count(1)
        page.screenshot(path=str(scripted_stack.var_dir / "cited-answer.png"), full_page=True)
        citation.click()
        expect(page).to_have_url(re.compile(r"/memory/documents/\d+/\?chunk=[0-9a-f-]+#chunk-[0-9a-f-]+$"))
        cited = page.locator("article.chunk.cited")
        expect(cited).to_have_count(1)
        expect(cited).to_contain_text("The shed code is 5512")
    finally:
        page.close()
