"""The eval runner: every mode on real suite items with a scripted model, failures and crashes recorded,
what a run ran on, cancel and restart, resample's budget, the `evals` command, the pages and the live socket."""
from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from forge import sandbox
from forge.config import forge_settings
from forge.evals import engine, services
from forge.evals.models import EvalResult, EvalRun
from forge.evals.suites import load_tasks, load_tools
from forge.toolforge import judge, requested_name, spec_checks, stated_checks
from personas.models import Event
from tests.livestack import clean_env
from tests.personas.scripted import Reply, ScriptedModel

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = load_tools()
TASKS = load_tasks()
FIRST_THREE = ["str-001", "str-002", "str-003"]  # count_vowels, compress_runs, wrap_at: 2, 2 and 1 examples
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
WRONG_TOKENS = 128  # what a wrong reply costs (a right one costs the scripted default, 5)


class WorkerKilled(BaseException):
    """What a worker process dying mid-run looks like to the code it was running."""


class SuiteModel(ScriptedModel):
    """BRICK writes each item's reference solution, except a wrong function for the `wrong` items and a
    crash (the model server gone) for the `crash` items; ALFRED answers each task with its own answer."""

    backend = "scripted"

    def __init__(self, *, wrong: tuple[str, ...] = (), crash: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.wrong, self.crash = set(wrong), set(crash)
        self.rules["forge"] = self.write
        self.rules["answer"] = self.answer

    def resolve(self, persona: str) -> tuple[str, str]:
        return persona, f"scripted-{persona.lower()}"

    def item_asked(self, messages: list[dict]) -> str:
        request = messages[1]["content"]  # the request itself, also in a repair's messages
        return next(item.id for item in TOOLS if f"{item.name}(" in request)

    def write(self, count: int, messages: list[dict]) -> str | Reply:
        item = next(i for i in TOOLS if i.id == self.item_asked(messages))
        if item.id in self.crash:
            raise RuntimeError("the model server went away")
        if item.id in self.wrong:
            wrong = f'```python\ndef {item.name}(*args):\n    """Not it."""\n    return None\n```'
            return Reply(content=wrong, completion_tokens=WRONG_TOKENS)
        return f"```python\n{item.reference}```"

    write.wants_messages = True  # type: ignore[attr-defined]

    def answer(self, count: int, messages: list[dict]) -> str:
        item = next(t for t in TASKS if t.task == messages[-1]["content"])
        answer = " and ".join(item.answer) if isinstance(item.answer, tuple) else item.answer
        return f"The answer is {answer}."

    answer.wants_messages = True  # type: ignore[attr-defined]

    def items_written(self) -> list[str]:
        return [self.item_asked(c["messages"]) for c in self.calls if c["kind"] == "forge"]


def execute(suite: str, mode: str, limit: int, model: ScriptedModel, **kwargs) -> EvalRun:
    run = services.eval_run_create(suite=suite, mode=mode, limit=limit, enqueue=False)
    return services.eval_run_execute(run_id=run.pk, model=model, **kwargs)


def results_of(run: EvalRun) -> dict[str, EvalResult]:
    return {r.item_id: r for r in run.results.all()}


# ------------------------------------------------------------------------------------------- suites
def test_every_tools_item_is_runnable_by_the_runner_and_its_reference_passes_in_the_sandbox():
    run = services.eval_run_create(suite="tools", mode="single", limit=0, enqueue=False)
    assert run.item_ids == [i.id for i in TOOLS] and run.total == len(TOOLS)
    config = forge_settings()
    broken = []
    for item in TOOLS:
        # The runner finds the function's name and the spec's own examples (resample and the forge judge by them).
        if requested_name(item.spec) != item.name or len(spec_checks(item.spec, item.name)) != len(item.examples):
            broken.append(f"{item.id}: name or examples not found in the spec")
        passed, why = engine.run_hidden(item.reference, item, config)
        if not passed:
            broken.append(f"{item.id}: {why}")
    assert broken == []


def test_every_result_the_tools_suite_states_in_words_is_read_right():
    # The forge holds candidates to what a request states in words; read wrongly, such a check would
    # turn a right function away. On the team's suite every one must hold for the reference solution.
    config = forge_settings()
    read, wrong = 0, []
    for item in TOOLS:
        checks = stated_checks(item.spec, item.name, spec_checks(item.spec, item.name))
        if not checks:
            continue
        verdict = judge(item.reference, checks, backend=config.backend, limits=config.limits)
        read += len(checks)
        wrong += [f"{item.id}: {c.source()} ({r})" for c, r in zip(checks, verdict.results) if not r.get("ok")]
    assert wrong == []
    assert read >= 15  # the suite states such results in at least this many places (20 today)


def test_the_whole_tasks_suite_runs_and_each_right_answer_passes():
    run = execute("tasks", "single", 0, SuiteModel())
    assert run.status == EvalRun.Status.DONE, run.error
    # Every task but the web ones, which need a search engine serving their pages (checked elsewhere).
    assert run.total == run.done == run.passed == len([t for t in TASKS if not t.setup_web]) == len(TASKS) - 5
    assert run.model == "ALFRED: scripted-alfred"


def test_an_unknown_suite_or_mode_is_refused_before_anything_is_recorded():
    with pytest.raises(ValueError, match="Unknown suite"):
        services.eval_run_create(suite="poems", mode="single", enqueue=False)
    with pytest.raises(ValueError, match="The tasks suite has no mode 'forge'"):
        services.eval_run_create(suite="tasks", mode="forge", enqueue=False)
    with pytest.raises(ValueError, match="whole number"):
        services.eval_run_create(suite="tools", mode="single", limit=-1, enqueue=False)
    assert not EvalRun.objects.exists()


# -------------------------------------------------------------------------------------------- modes
def test_single_mode_judges_one_greedy_reply_per_item_by_its_hidden_tests():
    model = SuiteModel(wrong=("str-002",))
    run = execute("tools", "single", 3, model)

    assert run.status == EvalRun.Status.DONE, run.error
    assert (run.total, run.done, run.passed) == (3, 3, 2)
    results = results_of(run)
    assert [r.passed for r in results.values()] == [True, False, True]
    assert all(r.attempts == 1 and r.why == "" for r in results.values() if r.passed)
    # Why the wrong one failed: the hidden test that caught it, with its line.
    assert results["str-002"].why == "hidden test `assert compress_runs('') == ''` failed: the call returned None"
    assert "def compress_runs(*args)" in results["str-002"].output
    forge_calls = [c for c in model.calls if c["kind"] == "forge"]
    assert model.items_written() == FIRST_THREE
    assert all(c["temperature"] == 0.0 and c["max_tokens"] == forge_settings().max_tokens for c in forge_calls)
    # One plain call: the request as written, without the forge's rules listed after it.
    assert not any("The request's rules" in c["messages"][1]["content"] for c in forge_calls)
    assert run.tokens == sum(r.tokens for r in results.values()) == 5 + WRONG_TOKENS + 5


def test_forge_mode_runs_the_tool_forge_loop_and_keeps_its_attempts():
    model = SuiteModel(wrong=("str-002",))
    run = execute("tools", "forge", 3, model)

    assert run.status == EvalRun.Status.DONE, run.error
    results = results_of(run)
    assert [r.passed for r in results.values()] == [True, False, True]
    vowels = results["str-001"]
    assert vowels.attempts == 1 and vowels.detail["attempts"][0]["spec_passed"] == 2
    assert "PASS [spec] count_vowels('Hello World') == 3: returned 3" in vowels.detail["attempts"][0]["stdout"]
    runs = results["str-002"]
    assert runs.attempts == 3 and runs.output == ""
    assert runs.why.startswith("gave up after 3 attempt(s): no function passes all 2 example(s) of the request")
    assert all("FAIL [spec] compress_runs('aaabccdddd')" in a["stdout"] for a in runs.detail["attempts"])
    # The forge's own request: wrap_at's four sentences listed as rules after it.
    [wrap] = [c for c in model.calls if c["kind"] == "forge" and "wrap_at(" in c["messages"][1]["content"]]
    assert "4. Empty or blank text gives []." in wrap["messages"][1]["content"]


def test_resample_mode_takes_the_first_sample_that_passes_the_specs_examples():
    run = execute("tools", "resample", 3, SuiteModel(wrong=("str-002",)))

    assert run.status == EvalRun.Status.DONE, run.error
    results = results_of(run)
    assert [r.passed for r in results.values()] == [True, False, True]
    assert results["str-001"].attempts == 1 and results["str-001"].detail == {"chosen_by": "spec examples"}
    wrong = results["str-002"]
    assert wrong.detail == {"chosen_by": "first sample (none passed the examples)"}
    assert wrong.why.startswith("hidden test `assert compress_runs(")
    # With no forge run to take a budget from: samples until max_tokens * max_attempts tokens are spent.
    config = forge_settings()
    assert wrong.attempts == -(-config.max_tokens * config.max_attempts // WRONG_TOKENS)


def test_resample_spends_the_token_budget_of_the_previous_forge_run():
    forge = execute("tools", "forge", 2, SuiteModel(wrong=("str-002",)))
    spent = results_of(forge)["str-002"].tokens
    # Five calls: each repair that repeated the wrong code was replaced by a fresh sample.
    assert spent == 5 * WRONG_TOKENS

    resample = execute("tools", "resample", 2, SuiteModel(wrong=("str-002",)))
    wrong = results_of(resample)["str-002"]
    config = forge_settings()
    assert wrong.tokens == spent and wrong.attempts == 5
    assert wrong.attempts != -(-config.max_tokens * config.max_attempts // WRONG_TOKENS)  # not the default budget
    assert results_of(resample)["str-001"].attempts == 1


class DemoPrintModel(SuiteModel):
    """Writes each reference with a demo print at module level: right code that the static checks refuse."""

    def write(self, count: int, messages: list[dict]) -> str | Reply:
        item = next(i for i in TOOLS if i.id == self.item_asked(messages))
        return Reply(content=f"```python\n{item.reference}\nprint('demo')\n```", completion_tokens=WRONG_TOKENS)

    write.wants_messages = True  # type: ignore[attr-defined]


def test_resample_never_does_worse_than_single_on_code_the_static_checks_refuse():
    single = execute("tools", "single", 2, DemoPrintModel())
    resample = execute("tools", "resample", 2, DemoPrintModel())
    assert [r.passed for r in results_of(single).values()] == [True, True]
    chosen = results_of(resample)
    assert [r.passed for r in chosen.values()] == [True, True]
    assert {r.detail["chosen_by"] for r in chosen.values()} <= {
        "first sample (none passed the examples)", "first sample (none passed the static checks)"}


def test_a_crashed_item_is_recorded_with_the_reason_and_the_run_goes_on():
    model = SuiteModel(crash=("str-002",))
    run = execute("tools", "single", 3, model)

    assert run.status == EvalRun.Status.DONE and run.error == ""
    assert (run.done, run.passed) == (3, 2)
    crashed = results_of(run)["str-002"]
    assert not crashed.passed
    assert crashed.why == "the single mode crashed: RuntimeError: the model server went away"
    assert model.items_written() == FIRST_THREE  # the item after the crash ran too


def test_a_run_records_the_model_backend_sandbox_settings_and_commit():
    config = forge_settings()
    run = execute("tools", "single", 1, SuiteModel())

    assert run.model == "BRICK: scripted-brick" and run.backend == "scripted"
    assert run.sandbox == sandbox.select_backend(config.backend).name  # the backend really used, not "auto"
    snapshot = services.settings_snapshot(config)
    assert run.settings == json.loads(json.dumps(snapshot, default=str))
    assert run.settings["forge"]["max_tokens"] == config.max_tokens
    assert run.settings_digest == services.digest(snapshot) and len(run.settings_digest) == 16
    assert run.commit == services.git_commit() and run.commit not in ("", "unknown")
    assert run.started and run.finished and run.started <= run.finished
    assert Event.objects.filter(kind="evals.started", payload__eval_run=run.pk).exists()
    assert Event.objects.filter(kind="evals.done", payload__eval_run=run.pk).exists()



def seeds_asked(model: SuiteModel) -> dict[str, list[int]]:
    asked: dict[str, list[int]] = {}
    for call in model.calls:
        if call["kind"] == "forge":
            asked.setdefault(model.item_asked(call["messages"]), []).append(call["seed"])
    return asked


def test_each_item_draws_from_its_own_seed_the_same_in_every_run_and_mode():
    first, again = SuiteModel(wrong=("str-002",)), SuiteModel(wrong=("str-002",))
    run = execute("tools", "forge", 2, first)
    execute("tools", "forge", 2, again)

    seeds = seeds_asked(first)
    assert seeds == seeds_asked(again)  # a second run draws the very same samples
    base = engine.item_seed(engine.SEED, "str-002")
    assert seeds["str-002"] == list(range(base, base + len(seeds["str-002"])))  # a seed per model call
    assert len(seeds["str-002"]) == 5
    assert seeds["str-001"] == [engine.item_seed(engine.SEED, "str-001")] != seeds["str-002"][:1]
    assert run.settings["seed"] == engine.SEED

    resampled = SuiteModel(wrong=("str-002",))
    execute("tools", "resample", 2, resampled)
    assert seeds_asked(resampled)["str-002"][:5] == seeds["str-002"]  # sample k on the forge's k-th seed

    single = SuiteModel()
    execute("tools", "single", 2, single)  # greedy, yet seeded: a seeded call skips the prompt cache
    assert seeds_asked(single) == {i: [engine.item_seed(engine.SEED, i)] for i in FIRST_THREE[:2]}


class SeedlessModel(SuiteModel):
    """A model whose chat() knows no seed, as a model double or an older backend may not."""

    def chat(self, persona_or_model, messages, *, tools=None, json_schema=None, on_token=None, max_tokens=None,
             temperature=None, stop=None, adapter="promoted"):
        return super().chat(persona_or_model, messages, tools=tools, json_schema=json_schema, on_token=on_token,
                            max_tokens=max_tokens, temperature=temperature, stop=stop, adapter=adapter)


@pytest.mark.parametrize("mode", ["forge", "resample"])
def test_an_unseeded_item_leaves_every_draw_to_the_model(mode):
    model = SeedlessModel(wrong=("str-002",))
    config = forge_settings()
    result = engine.run_tool_item(next(i for i in TOOLS if i.id == "str-002"), mode, model, config, seed=None)
    assert result.attempts > 1 and "crashed" not in result.why, result.why
    assert {c["seed"] for c in model.calls} == {None}


def test_the_bench_refuses_a_seed_that_is_not_a_number_before_it_loads_a_model():
    root = Path(__file__).resolve().parents[2]
    for bench in ("bench/evals.py", "bench/ceiling.py"):
        args = [sys.executable, bench, "--ids", "str-001", "--seed", "many"]
        if bench == "bench/evals.py":
            args[2:2] = ["--suite", "tools", "--modes", "resample"]
        done = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "--seed 'many': give a whole number or none" in done.stderr, done.stderr


# ------------------------------------------------------------------------------- cancel and restart
def test_a_cancel_is_honoured_between_items():
    model = SuiteModel()
    run = services.eval_run_create(suite="tools", mode="single", limit=3, enqueue=False)

    def cancel_after_the_first(result: engine.ItemResult) -> None:
        services.eval_run_cancel(run=EvalRun.objects.get(pk=run.pk))
        assert EvalRun.objects.get(pk=run.pk).status == EvalRun.Status.CANCELLING

    run = services.eval_run_execute(run_id=run.pk, model=model, on_result=cancel_after_the_first)
    assert run.status == EvalRun.Status.CANCELLED and run.finished
    assert (run.done, run.total) == (1, 3) and list(results_of(run)) == ["str-001"]
    assert model.items_written() == ["str-001"]
    with pytest.raises(ValueError, match="only queued or running evals can be cancelled"):
        services.eval_run_cancel(run=run)


def test_a_queued_run_cancelled_before_a_worker_takes_it_never_runs():
    model = SuiteModel()
    run = services.eval_run_create(suite="tools", mode="single", limit=2, enqueue=False)
    assert services.eval_run_cancel(run=run).status == EvalRun.Status.CANCELLED
    assert services.eval_run_execute(run_id=run.pk, model=model) is None
    assert model.calls == [] and not EvalResult.objects.exists()


def test_a_restarted_run_skips_the_items_it_already_has():
    run = services.eval_run_create(suite="tools", mode="single", limit=3, enqueue=False)

    def die_after_the_first(result: engine.ItemResult) -> None:
        raise WorkerKilled

    with pytest.raises(WorkerKilled):
        services.eval_run_execute(run_id=run.pk, model=SuiteModel(), on_result=die_after_the_first)
    interrupted = EvalRun.objects.get(pk=run.pk)
    assert interrupted.status == EvalRun.Status.RUNNING and interrupted.done == 1

    # Queued again (as a restart would), it picks up where it stopped: the stored item is not asked again.
    EvalRun.objects.filter(pk=run.pk).update(status=EvalRun.Status.QUEUED)
    model = SuiteModel()
    run = services.eval_run_execute(run_id=run.pk, model=model)
    assert run.status == EvalRun.Status.DONE
    assert model.items_written() == ["str-002", "str-003"]
    assert (run.done, run.passed, run.total) == (3, 3, 3)
    assert sorted(results_of(run)) == FIRST_THREE


# ------------------------------------------------------------------------------------- the command
def test_evals_run_command_refuses_when_the_models_broker_is_down(tmp_path):
    from types import SimpleNamespace

    from personas.inference.lock import BrokerModelLock
    from personas.llm import set_model_manager

    # The product's manager shares the model through the broker; here nothing answers on its socket.
    set_model_manager(SimpleNamespace(lock=BrokerModelLock(f"unix://{tmp_path / 'broker.sock'}")))
    try:
        with pytest.raises(CommandError, match="The product is not running"):
            call_command("evals", "run", "--suite", "tools", "--mode", "single", "--limit", "1", stdout=StringIO())
    finally:
        set_model_manager(None)
    assert not EvalRun.objects.exists()


def test_evals_run_command_prints_the_run_as_json(scripted_model):
    suite = SuiteModel()
    scripted_model.rules["forge"] = suite.write
    out = StringIO()
    call_command("evals", "run", "--suite", "tools", "--mode", "single", "--limit", "2", "--json", stdout=out)

    data = json.loads(out.getvalue())
    assert data["status"] == "done" and data["pass_rate"] == 1.0 and (data["items"], data["passed"]) == (2, 2)
    assert [r["item"] for r in data["results"]] == FIRST_THREE[:2]
    assert all(r["passed"] and r["why"] == "" for r in data["results"])
    assert "def count_vowels" in data["results"][0]["output"]
    assert data["categories"] == {"strings": 1.0}
    assert data["commit"] and data["settings_digest"] and data["sandbox"]

    listing = StringIO()
    call_command("evals", "list", stdout=listing)
    assert f"#{data['id']}" in listing.getvalue() and "2/2 of 2" in listing.getvalue()


def test_evals_command_refuses_a_mode_the_suite_does_not_have(scripted_model):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="The tasks suite has no mode 'forge'"):
        call_command("evals", "run", "--suite", "tasks", "--mode", "forge", stdout=StringIO())
    assert not EvalRun.objects.exists()


def test_evals_compare_lists_the_items_that_flipped():
    before = execute("tools", "single", 3, SuiteModel(wrong=("str-003",)))
    after = execute("tools", "single", 3, SuiteModel(wrong=("str-002",)))
    out = StringIO()
    call_command("evals", "compare", str(before.pk), str(after.pk), stdout=out)

    text = out.getvalue()
    assert "(1 fixed, 1 broken, 1 unchanged)" in text
    flips = {line.split()[0]: line.split()[1] for line in text.splitlines()[1:]}
    assert flips == {"str-002": "broken", "str-003": "fixed"}


# ------------------------------------------------------------------------------------------ pages
@pytest.mark.parametrize("name,args", [
    ("evals", []), ("eval_run", [1]), ("eval_item", [1, "str-001"]), ("eval_compare", []),
])
def test_eval_pages_need_a_login(client, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_cancelling_needs_a_login(client):
    run = services.eval_run_create(suite="tools", mode="single", limit=1, enqueue=False)
    response = client.post(reverse("eval_run_cancel", args=[run.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert EvalRun.objects.get(pk=run.pk).status == EvalRun.Status.QUEUED


def test_the_evals_page_shows_runs_and_the_scoreboard(auth_client):
    html = auth_client.get(reverse("evals")).content.decode()
    assert "No finished eval yet" in html and "No eval run yet." in html
    assert f"{len(TOOLS)} tools, {len(TASKS) - 5} tasks" in html

    run = execute("tools", "single", 3, SuiteModel(wrong=("str-002",)))
    html = auth_client.get(reverse("evals")).content.decode()
    assert f'id="eval-run-row-{run.pk}" data-status="done"' in html and "67%" in html
    assert '<svg class="chart"' in html and "<circle" in html
    assert f"#{run.pk} tools/single: 67%" in html  # the point's title
    assert "tools / single: latest" in html and f'href="{reverse("eval_run", args=[run.pk])}"' in html
    assert 'ws-connect="/ws/evals/"' in html


def test_a_run_page_shows_progress_results_and_the_per_category_table(auth_client):
    run = execute("tools", "single", 3, SuiteModel(wrong=("str-002",)))
    html = auth_client.get(reverse("eval_run", args=[run.pk])).content.decode()

    assert f'id="eval-run-head-{run.pk}"' in html and 'data-status="done"' in html
    assert "3 of 3 items" in html and "67% passed (2)" in html
    assert "BRICK: scripted-brick (scripted)" in html and run.settings_digest in html and run.commit in html
    assert html.count('class="eval-result ') == 3 and html.count('class="eval-result failed"') == 1
    assert "hidden test `assert compress_runs(" in html  # why the failed item failed
    assert "category: <strong>strings</strong>" in html and "style: <strong>docstring</strong>" in html
    assert f'ws-connect="/ws/evals/{run.pk}/"' in html


def test_an_item_page_shows_why_it_failed_the_spec_the_code_and_the_hidden_tests(auth_client):
    run = execute("tools", "forge", 2, SuiteModel(wrong=("str-002",)))
    html = auth_client.get(reverse("eval_item", args=[run.pk, "str-002"])).content.decode()

    assert "Why it failed" in html and "gave up after 3 attempt(s)" in html
    assert "def compress_runs(text: str) -&gt; str:" in html  # the spec
    assert "Forge attempts" in html and "FAIL [spec] compress_runs(&#x27;aaabccdddd&#x27;)" in html
    # Each candidate's own code, not only what its checks printed: the scripted wrong function.
    assert html.count('<summary>its code</summary><pre class="code">def compress_runs(*args):') == 3
    assert "Hidden tests" in html and "assert compress_runs(" in html
    passed = auth_client.get(reverse("eval_item", args=[run.pk, "str-001"])).content.decode()
    assert "Why it failed" not in passed and "def count_vowels" in passed and "Tests the forge kept" in passed
    assert auth_client.get(reverse("eval_item", args=[run.pk, "str-009"])).status_code == 404


def test_the_compare_page_shows_the_flips(auth_client):
    before = execute("tools", "single", 2, SuiteModel())
    after = execute("tools", "single", 2, SuiteModel(wrong=("str-002",)))
    url = reverse("eval_compare") + f"?run={after.pk}&run={before.pk}"
    html = auth_client.get(url).content.decode()

    assert f"Eval #{before.pk} → #{after.pk}" in html
    assert "0 fixed" in html and "1 broken" in html and "1 unchanged" in html
    assert 'class="flip-broken"><td><code>str-002</code>' in html and "<code>str-001</code>" not in html
    response = auth_client.get(reverse("eval_compare") + f"?run={before.pk}", follow=True)
    assert "Tick exactly two eval runs to compare." in response.content.decode()


@pytest.mark.parametrize("form,message", [
    ({"suite": "tasks", "mode": "forge", "limit": "1"}, "The tasks suite has no forge mode"),
    ({"suite": "tools", "mode": "single", "limit": "-1"}, "Ensure this value is greater than or equal to 0."),
    ({"suite": "poems", "mode": "single", "limit": "1"}, "Select a valid choice."),
])
def test_bad_form_input_is_refused_with_the_error_shown_and_nothing_created(auth_client, form, message):
    response = auth_client.post(reverse("evals"), form)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not EvalRun.objects.exists() and not Event.objects.filter(kind="evals.queued").exists()


def test_starting_an_eval_from_the_page_runs_it_and_opens_its_page(auth_client, scripted_model):
    scripted_model.rules["forge"] = SuiteModel().write
    response = auth_client.post(reverse("evals"), {"suite": "tools", "mode": "single", "limit": "2"})

    run = EvalRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("eval_run", args=[run.pk])
    assert run.created_by.username == "ada"
    run.refresh_from_db()  # the worker (Huey runs immediately in tests) has run it
    assert run.status == EvalRun.Status.DONE and (run.done, run.passed) == (2, 2)


# ------------------------------------------------------------------------------------------ socket
@database_sync_to_async
def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_the_run_socket_refuses_anonymous_users():
    run = await database_sync_to_async(services.eval_run_create)(suite="tools", mode="single", limit=1,
                                                                 enqueue=False)
    from a4ps_site.asgi import application

    for path in (f"/ws/evals/{run.pk}/", "/ws/evals/"):
        anonymous = WebsocketCommunicator(application, path, headers=[ORIGIN])
        connected, _ = await anonymous.connect()
        assert not connected
        await anonymous.disconnect()


async def test_the_run_socket_receives_each_stored_item_with_the_header(user):
    from a4ps_site.asgi import application

    run = await database_sync_to_async(services.eval_run_create)(suite="tools", mode="single", limit=2,
                                                                 enqueue=False)
    cookie = await session_cookie(user)
    page = WebsocketCommunicator(application, f"/ws/evals/{run.pk}/", headers=[ORIGIN, (b"cookie", cookie)])
    listing = WebsocketCommunicator(application, "/ws/evals/", headers=[ORIGIN, (b"cookie", cookie)])
    assert (await page.connect())[0] and (await listing.connect())[0]

    await database_sync_to_async(services.eval_run_execute)(run_id=run.pk, model=SuiteModel(wrong=("str-002",)))
    first, second, final = [await page.receive_from(timeout=5) for _ in range(3)]
    assert f'id="eval-run-head-{run.pk}"' in first and 'hx-swap-oob="true"' in first and "1 of 2 items" in first
    assert '<ol id="eval-results" hx-swap-oob="beforeend">' in first
    assert "<code>str-001</code>" in first and 'class="eval-result passed"' in first
    assert "2 of 2 items" in second and "<code>str-002</code>" in second and 'class="eval-result failed"' in second
    assert 'data-status="done"' in final and "50% passed (1)" in final and "eval-result" not in final
    # The per-category table follows each item live, not only on reload.
    for update, judged in ((first, 1), (second, 2)):
        table = update.split(f'id="eval-table-{run.pk}"')[1]
        assert f"category: <strong>strings</strong></td><td>{judged}</td>" in table
    rows = [await listing.receive_from(timeout=5) for _ in range(3)]
    assert all(f'id="eval-run-row-{run.pk}"' in row for row in rows) and 'data-status="done"' in rows[-1]
    await page.disconnect()
    await listing.disconnect()


async def test_the_run_socket_replays_the_rows_a_page_missed(user):
    from a4ps_site.asgi import application

    def finished_run() -> tuple[int, list[int]]:
        run = execute("tools", "single", 3, SuiteModel())
        return run.pk, list(run.results.order_by("pk").values_list("pk", flat=True))

    run_id, result_ids = await database_sync_to_async(finished_run)()
    cookie = await session_cookie(user)
    ws = WebsocketCommunicator(application, f"/ws/evals/{run_id}/", headers=[ORIGIN, (b"cookie", cookie)])
    assert (await ws.connect())[0]
    await ws.send_to(text_data=json.dumps({"resume_after": result_ids[0]}))
    replayed = [await ws.receive_from(timeout=5) for _ in range(3)]
    assert f'id="eval-result-{result_ids[1]}"' in replayed[0] and "<code>str-002</code>" in replayed[0]
    assert f'id="eval-result-{result_ids[2]}"' in replayed[1]
    assert f'id="eval-result-{result_ids[0]}"' not in "".join(replayed)
    assert f'id="eval-run-head-{run_id}"' in replayed[2] and 'data-status="done"' in replayed[2]
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


def test_a_mode_that_raises_value_error_fails_its_item_and_the_run_goes_on():
    class Refuses(SuiteModel):
        def chat(self, persona, messages, **kwargs):
            if "compress_runs" in messages[-1]["content"]:
                raise ValueError("could not decode the reply")
            return super().chat(persona, messages, **kwargs)

    run = execute("tools", "single", 3, Refuses())
    assert run.status == EvalRun.Status.DONE and run.done == 3
    failed = run.results.get(item_id="str-002")
    assert not failed.passed and "could not decode the reply" in failed.why


def test_resample_stops_after_a_bounded_number_of_samples():
    item = load_tools()[0]
    model = ScriptedModel({"forge": Reply(content="```python\ndef count_vowels(text):\n    return 0\n```",
                                          completion_tokens=0)})
    produced = engine.produce_resample(item, model, forge_settings(), budget=50)
    assert produced.attempts == engine.MAX_RESAMPLES


def test_the_bench_counts_the_time_its_model_calls_waited_for_another_process_and_says_so():
    from types import SimpleNamespace

    from bench.evals import LockWaits

    class Model:
        lock = "the model lock"

        def __init__(self, waits_ms):
            self.waits_ms = list(waits_ms)

        def chat(self, persona, messages, **options):
            return SimpleNamespace(content="", wait_ms=self.waits_ms.pop(0))

    alone = LockWaits(Model([0.0, 0.4]))
    alone.chat("BRICK", [])
    alone.chat("BRICK", [])
    assert alone.waited_s == pytest.approx(0.0004) and alone.warning("var") == ""
    assert alone.lock == "the model lock"  # the rest of the model as it is

    shared = LockWaits(Model([0.0, 21_000.0, 19_500.0]))
    for _ in range(3):
        shared.chat("BRICK", [])
    assert shared.waited_s == pytest.approx(40.5)
    said = shared.warning("/tmp/shared-var")
    assert "waited 40 s" in said and "/tmp/shared-var" in said and "its own --var-dir" in said


def test_the_bench_refuses_an_item_it_does_not_have_and_leaves_no_scratch_dir_behind(tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = clean_env()
    temp = tmp_path / "temp"
    temp.mkdir()
    env["TMPDIR"] = str(temp)

    def bench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "bench/evals.py", "--modes", "single", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)

    done = bench("--suite", "tools", "--ids", "str-001,none-such")
    assert done.returncode == 1 and "no such tools item: none-such" in done.stderr, done.stderr
    # The tasks suite works in a scratch var/, set up before the items are chosen: removed on the way out.
    done = bench("--suite", "tasks", "--ids", "none-such")
    assert done.returncode == 1 and "no such task" in done.stderr and "none-such" in done.stderr, done.stderr
    assert list(temp.iterdir()) == []
    done = bench("--suite", "tasks", "--ids", "none-such", "--keep-scratch")
    [kept] = temp.iterdir()
    assert f"scratch kept: {kept}" in done.stdout and (kept / "var").is_dir()


@pytest.mark.parametrize("given, said", [
    ("bogus=1", "unknown key(s): bogus"),
    ("edge_cases=maybe", "must be a TOML value"),
    ("edge_cases=3", "forge.edge_cases must be true or false"),
])
def test_the_bench_refuses_bad_forge_overrides_before_it_loads_a_model(given, said):
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "bench/evals.py", "--suite", "tools", "--modes", "forge",
                           "--ids", "str-001", "--forge", given], cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and said in done.stderr, done.stderr


def test_the_ceiling_bench_counts_what_choosing_among_samples_could_reach(tmp_path):
    # Per sample: passes the hidden tests, and/or the request's examples (what the forge can see).
    def row(item_id: str, marks: list[tuple[bool, bool]]) -> str:
        samples = [{"tokens": 9, "seconds": 1.0, "examples": e, "hidden": h} for e, h in marks]
        return json.dumps({"item_id": item_id, "category": "lists", "style": "plain", "has_examples": True,
                           "samples": samples})
    saved = tmp_path / "ceiling.jsonl"
    saved.write_text("\n".join([
        row("a", [(True, False), (True, True)]),  # one right sample, seen by the examples; one misleads
        row("b", [(False, True), (False, False)]),  # right, but no sample passes the examples
        row("c", [(False, False), (True, False)]),  # nothing right; a wrong one passes the examples
    ]) + "\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "bench/ceiling.py", "--report", str(saved)], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result == {"items": 3, "samples": 6, "correct_samples": 2, "items_with_correct": 2, "visible": 1,
                      "misled": 2}
    assert "a        plain     eH" in done.stdout


def test_the_ceiling_bench_refuses_an_unknown_item_before_it_loads_a_model():
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "bench/ceiling.py", "--ids", "str-001,nope"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown item id(s): nope" in done.stderr, done.stderr
