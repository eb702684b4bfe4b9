"""In a real browser: label three of ALFRED's verdicts from the keyboard, then read the agreement."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.test_live_log import login

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def _verdicts(stack, accepted: list[bool]) -> set[int]:
    """Finished runs with one of ALFRED's verdicts each, the last the newest; their verdict ids."""
    ids = stack.manage("shell", "-c", (
        "from memory.models import CuratorVerdict\nfrom personas.models import Run\n"
        f"for i, ok in enumerate({accepted!r}):\n"
        "    run = Run.objects.create(task=f'Review task {i}', status='done', final_answer=f'Answer {i}')\n"
        "    v = CuratorVerdict.objects.create(run=run, scores={'reasoning': 8 if ok else 3, "
        "'persona_fidelity': 7, 'helpfulness': 8 if ok else 2}, total=7.7 if ok else 4.0, accepted=ok)\n"
        "    print(v.pk)")).stdout.split()
    return {int(x) for x in ids[-len(accepted):]}


def test_three_verdicts_labelled_by_keyboard(browser, scripted_stack):
    mine = _verdicts(scripted_stack, [True, False, True])
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


def test_a_key_pressed_as_the_next_card_arrives_labels_it_in_place(browser, scripted_stack):
    """htmx wires a swapped-in card only when it settles; a key in between must not submit the whole page."""
    mine = _verdicts(scripted_stack, [False, True])
    page = browser.new_page()
    card = page.locator("#review-card")
    try:
        login(page, scripted_stack)
        page.goto(f"{scripted_stack.url}/memory/datasets/review/")
        expect(card).to_be_visible()
        while int(card.get_attribute("data-verdict") or 0) != max(mine):
            before = card.get_attribute("data-verdict")
            page.keyboard.press("s")
            expect(card).not_to_have_attribute("data-verdict", before)
        # N arrives in the very moment the next card is swapped in, before htmx has settled it.
        page.evaluate("""() => document.body.addEventListener("htmx:afterSwap", () => {
            document.dispatchEvent(new KeyboardEvent("keydown", {key: "n", bubbles: true}));
        }, {once: true})""")
        page.keyboard.press("y")
        expect(page.locator("#review-last")).to_contain_text("you said not good")
        expect(page).to_have_url(f"{scripted_stack.url}/memory/datasets/review/")
    finally:
        page.close()
