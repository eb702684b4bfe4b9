"""In a real browser: label three of ALFRED's verdicts from the keyboard, then read the agreement."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.test_live_log import login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def test_three_verdicts_labelled_by_keyboard(browser, scripted_stack):
    ids = scripted_stack.manage("shell", "-c", (
        "from memory.models import CuratorVerdict\nfrom personas.models import Run\n"
        "for i, ok in enumerate([True, False, True]):\n"
        "    run = Run.objects.create(task=f'Review task {i}', status='done', final_answer=f'Answer {i}')\n"
        "    v = CuratorVerdict.objects.create(run=run, scores={'reasoning': 8 if ok else 3, "
        "'persona_fidelity': 7, 'helpfulness': 8 if ok else 2}, total=7.7 if ok else 4.0, accepted=ok)\n"
        "    print(v.pk)")).stdout.split()
    mine = {int(x) for x in ids[-3:]}
    page = browser.new_page()
    card = page.locator("#review-card")

    def answer(keys: list[str], *, focus: str = "") -> None:
        """Label the next of this test's verdicts; one the stack's own curator made meanwhile is skipped."""
        while int(card.get_attribute("data-verdict") or 0) not in mine:
            before = card.get_attribute("data-verdict")
            page.keyboard.press("s")
            expect(card).not_to_have_attribute("data-verdict", before)
        before = card.get_attribute("data-verdict")
        if focus:
            page.focus(focus)
        for key in keys:
            page.keyboard.press(key)
        expect(card).not_to_have_attribute("data-verdict", before)
        expect(page.locator("#review-last")).to_contain_text("Run #")

    try:
        login(page, scripted_stack)
        page.goto(f"{scripted_stack.url}/memory/datasets/")
        page.click("#review-link")
        expect(card).to_be_visible()
        answer(["y"])  # the newest of the three: accepted
        expect(page.locator("#review-last")).to_contain_text("you said good")
        expect(page.locator("#review-last")).to_contain_text("ALFRED scored it 7.7 and accepted it")
        answer(["n"])  # rejected
        expect(page.locator("#review-last")).to_contain_text("you said not good")
        expect(page.locator("#review-last")).to_contain_text("ALFRED scored it 4.0 and rejected it")
        answer(["9", "Enter"], focus="#score-reasoning")  # a score alone, typed and saved by Enter
        expect(page.locator("#review-last")).to_contain_text("(reasoning 9)")
        page.goto(f"{scripted_stack.url}/memory/datasets/")
        expect(page.locator("#agreement-thumbs")).to_contain_text("2 (2 agree)")
        expect(page.locator("#agreement-reasoning td.num")).to_have_text("1")
        page.screenshot(path=str(scripted_stack.var_dir / "datasets-agreement.png"), full_page=True)
    finally:
        page.close()
