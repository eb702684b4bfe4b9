"""In a real browser: open a dataset, press Fine-tune, watch the progress bar move and the job finish."""
from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.test_live_log import expect_live, login
from tests.memory.tiny_lm import build_tiny_model

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def _prepare(stack, name: str = "e2e sums") -> int:
    """A tiny base model for the stack's fine-tunes, and a dataset with a few chats."""
    tiny = build_tiny_model(stack.var_dir / "tiny-model")
    settings_toml = stack.var_dir / "config" / "settings.toml"
    if "[finetune]" not in settings_toml.read_text():
        settings_toml.write_text(settings_toml.read_text() + f'\n[finetune]\nbase_model_dir = "{tiny}"\n')
    chats = [[{"role": "user", "content": f"What is {i} + {i}?"}, {"role": "assistant", "content": f"It is {2 * i}."}]
             for i in range(8)]
    code = (
        "import json\nfrom memory.datasets import services as s\n"
        f"ds = s.dataset_create(persona='BRICK', name={name!r})\n"
        f"for m in json.loads({json.dumps(json.dumps(chats))}): s.example_add(dataset=ds, messages=m)\n"
        "print(ds.pk)"
    )
    return int(stack.manage("shell", "-c", code).stdout.strip().splitlines()[-1])


def test_fine_tune_from_a_dataset_with_live_progress(browser, scripted_stack):
    dataset_id = _prepare(scripted_stack)
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.goto(f"{scripted_stack.url}/memory/datasets/{dataset_id}/")
        expect(page.locator("#example-rows tr")).to_have_count(8)
        page.click("#finetune-button")
        expect(page.locator("#finetune-form")).to_be_visible()
        page.fill("input[name=epochs]", "8")
        page.fill("input[name=learning_rate]", "0.005")
        page.fill("input[name=eval_fraction]", "0.2")
        page.fill("input[name=eval_max_new_tokens]", "4")
        page.click("#start-finetune")
        expect(page).to_have_url(re.compile(r"/memory/finetunes/\d+/$"))
        job_id = int(re.search(r"/memory/finetunes/(\d+)/$", page.url).group(1))
        expect_live(page)
        marker = page.evaluate("() => performance.timeOrigin")
        # Record every progress value the page shows as partials arrive over the socket.
        page.evaluate("""() => {
            window.seenProgress = [];
            const note = () => { const p = document.querySelector('#job-progress');
                                 if (p) window.seenProgress.push(+p.value); };
            note();
            new MutationObserver(note).observe(document.body, {childList: true, subtree: true});
        }""")
        expect(page.locator("#job-status")).to_have_text("succeeded", timeout=180000)
        expect(page.locator("#finetune-status")).to_have_attribute("data-status", "succeeded")
        expect(page.locator("#job-progress")).to_have_attribute("value", "100")
        expect(page.locator("#finetune-status .progress-row strong")).to_have_text("100%")
        seen = page.evaluate("() => window.seenProgress")
        assert any(0 < v < 100 for v in seen), seen  # the bar moved through intermediate values
        assert seen == sorted(seen) and seen[-1] == 100
        assert page.evaluate("() => performance.timeOrigin") == marker  # no reload happened
        expect(page.locator(".loss-chart path.loss-line")).to_have_count(1)
        expect(page.locator("#job-log")).to_contain_text("Finished.")
        expect(page.locator("#evaluation .eval-row").first).to_be_visible()  # at least one held-out example
        page.screenshot(path=str(scripted_stack.var_dir / "finetune-page.png"), full_page=True)
        # Promote and Roll back sit in the status partial the socket pushes. The tiny base is no GGUF, so the
        # job has no llama.cpp adapter to promote: give it a stand-in file (the stack's worker is scripted and
        # never loads it), push the job's state, and use the buttons inside the pushed copy.
        page.locator("#finetune-status").evaluate("el => el.dataset.beforePush = '1'")
        adapter = scripted_stack.var_dir / "e2e-adapter.gguf"
        adapter.write_bytes(b"GGUF")
        # Its evaluation is set to a loss, so the gate is shut and only a typed reason promotes it.
        scripted_stack.manage("shell", "-c", (
            "from memory.finetunes.models import FineTuneJob; "
            "from memory.finetunes.services import finetune_broadcast; "
            f"j = FineTuneJob.objects.get(pk={job_id}); j.gguf_adapter_path = {str(adapter)!r}; "
            "j.evaluation = {**j.evaluation, 'tally': {'adapted': 2, 'base': 5, 'tie': 1, 'unjudged': 0}}; "
            f"j.save(); finetune_broadcast(job_id={job_id})"))
        expect(page.locator("#finetune-status:not([data-before-push])")).to_be_visible()
        expect(page.locator("#job-setup")).to_contain_text("e2e-adapter.gguf")  # the setup card follows too
        expect(page.locator("#promotion-gate")).to_have_attribute("data-passed", "false")
        expect(page.locator("#promotion-gate .gate-figures")).to_contain_text("won 2 · tied 1 · lost 5")
        expect(page.locator("#promote-job")).to_have_count(0)
        page.fill("#override-reason", "Only eight comparisons; the adapted answers read better to me.")
        page.click("#promote-anyway")
        expect(page.locator("#promoted-badge")).to_contain_text("in use by BRICK")
        expect(page.locator("#promotion-override")).to_contain_text("read better to me")
        expect(page.locator("#promotion-record")).to_contain_text("over the gate")
        page.click("#rollback-job")
        expect(page.locator("#promoted-badge")).to_have_count(0)
        expect(page.locator("#override-form")).to_be_visible()
        page.goto(f"{scripted_stack.url}/memory/finetunes/")
        expect(page.locator(f"#finetune-row-{job_id}")).to_have_attribute("data-status", "succeeded")
    finally:
        page.close()


def test_compare_in_chat_shows_both_answers_live_and_reveals_them_after_the_vote(browser, scripted_stack):
    adapter = scripted_stack.var_dir / "e2e-compare-adapter.gguf"
    adapter.write_bytes(b"GGUF")  # the stack's worker is scripted: the file is named, never loaded
    job_id = int(scripted_stack.manage("shell", "-c", (
        "from memory.finetunes.models import FineTuneJob; "
        f"j = FineTuneJob.objects.create(persona='BRICK', base_model='base.gguf', status='succeeded', "
        f"gguf_adapter_path={str(adapter)!r}, evaluation={{'tally': {{'adapted': 3, 'base': 0, 'tie': 0}}}}); "
        "print(j.pk)")).stdout.strip().splitlines()[-1])
    page = browser.new_page()
    try:
        login(page, scripted_stack)
        page.goto(f"{scripted_stack.url}/memory/finetunes/{job_id}/")
        expect(page.locator("#promotion-gate")).to_have_attribute("data-passed", "false")
        page.click("#compare-link")
        expect(page.locator("#no-comparisons")).to_be_visible()
        expect_live(page)
        page.fill("#compare-prompt", "What is two plus two?")
        page.click("#compare-send")
        card = page.locator("article.comparison").first
        expect(card).to_have_attribute("data-status", "done", timeout=60000)  # arrives over the socket
        expect(card.locator(".answer-a")).to_contain_text("two")
        expect(card.locator(".answer-b")).to_contain_text("two")
        expect(card.locator(".answer-a h3")).to_have_text("A")  # blind until the vote
        answers = {card.locator(".answer-a p").inner_text(), card.locator(".answer-b p").inner_text()}
        assert answers == {"Two plus two is four, by counting.", "Four: two and two, counted together."}
        adapted_label = "A" if "counted together" in card.locator(".answer-a p").inner_text() else "B"
        card.locator(f"button[value={adapted_label}]").click()
        expect(card).to_have_attribute("data-vote", adapted_label)
        expect(card.locator(f".answer-{adapted_label.lower()} h3")).to_have_text(f"{adapted_label} — adapter")
        expect(card.locator(".vote-row")).to_contain_text("the adapter is better")
        page.screenshot(path=str(scripted_stack.var_dir / "compare-page.png"), full_page=True)
        page.goto(f"{scripted_stack.url}/memory/finetunes/{job_id}/")
        expect(page.locator("#gate-votes")).to_contain_text("1 vote")
        expect(page.locator("#promotion-gate .gate-figures")).to_contain_text("won 4 · tied 0 · lost 0")
    finally:
        page.close()
