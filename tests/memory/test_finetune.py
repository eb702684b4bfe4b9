"""Fine-tunes: a real LoRA training on a tiny model, the job from button to evaluation, promote/rollback."""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from memory.datasets import services as datasets
from memory.finetunes import engine as ft
from memory.finetunes import services
from memory.models import FineTuneJob
from tests.memory.test_curator import Verdict
from tests.memory.tiny_lm import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]


def conversations(n: int = 6) -> list[list[dict[str, str]]]:
    return [[{"role": "system", "content": "You are BRICK."}, {"role": "user", "content": f"What is {i} + {i}?"},
             {"role": "assistant", "content": f"It is {2 * i}."}] for i in range(n)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_hyperparameters_are_validated_with_the_field_named():
    assert ft.Hyperparameters.from_dict({}).lora_r == 8
    for bad, field in [({"lora_r": 0}, "lora_r"), ({"learning_rate": "fast"}, "learning_rate"),
                       ({"epochs": 1.5}, "epochs"), ({"lora_dropout": 2}, "lora_dropout"),
                       ({"target_modules": "q_proj, bad-name"}, "target_modules"), ({"colour": 1}, "colour")]:
        with pytest.raises(ValueError, match=field):
            ft.Hyperparameters.from_dict(bad)


def test_encode_learns_only_the_assistant_turns(tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    ids, labels = ft.encode(tok, conversations(1)[0], 512)
    learned = tok.decode([t for t in labels if t != -100])
    assert learned.startswith("It is 0.") and "What is" not in learned
    assert len(ids) == len(labels)
    # Truncation keeps the end, where the answer is.
    ids, labels = ft.encode(tok, conversations(1)[0], 12)
    assert len(ids) == 12 and any(t != -100 for t in labels)


def test_real_lora_training_keeps_the_loss_finite_and_changes_the_logits(tiny_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, tok, backend = ft.load_base(tiny_dir, log=lambda _: None)
    assert backend == "peft"
    hyper = ft.Hyperparameters.from_dict({"epochs": 2, "learning_rate": 5e-3, "max_len": 64})
    model = ft.attach_lora(model, hyper)
    seen = []
    result = ft.train_lora(model, tok, conversations(), hyper, on_step=seen.append, log=lambda _: None)
    assert result.steps == 12 and [s.step for s in seen] == list(range(1, 13))
    assert all(math.isfinite(x) for x in result.losses) and result.tokens > 0
    model.save_pretrained(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size > 0

    base = AutoModelForCausalLM.from_pretrained(str(tiny_dir))
    ids = tok("<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = base(ids).logits.clone()
        adapted = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))(ids).logits
    assert not torch.allclose(before, adapted)


def test_training_stops_between_steps_when_cancelled(tiny_dir):
    model, tok, _ = ft.load_base(tiny_dir, log=lambda _: None)
    hyper = ft.Hyperparameters.from_dict({"epochs": 5})
    model = ft.attach_lora(model, hyper)
    steps = []
    with pytest.raises(ft.Cancelled, match="before step 3"):
        ft.train_lora(model, tok, conversations(), hyper, on_step=steps.append, should_stop=lambda: len(steps) >= 2,
                      log=lambda _: None)
    assert len(steps) == 2


def test_the_evaluation_stops_between_held_out_examples_when_cancelled(tiny_dir):
    model, tok, _ = ft.load_base(tiny_dir, log=lambda _: None)
    model = ft.attach_lora(model, ft.Hyperparameters.from_dict({}))
    said = []
    with pytest.raises(ft.Cancelled, match="during the evaluation, before held-out example 2 of 3"):
        ft.compare_on_held_out(model, tok, conversations(3), max_new_tokens=4, log=said.append,
                               should_stop=lambda: len(said) >= 1)
    assert said == ["Held-out example 1/3: base and adapted answers generated."]
    # Not asked to stop, every held-out chat is answered.
    rows = ft.compare_on_held_out(model, tok, conversations(3), max_new_tokens=4, log=lambda _: None,
                                  should_stop=lambda: False)
    assert [r["reference"] for r in rows] == ["It is 0.", "It is 2.", "It is 4."]


# --- the job, through the services and pages ------------------------------------------------------------

class Alfred:
    """Prefers whichever answer is labelled A."""

    def __init__(self) -> None:
        self.calls = []

    def chat(self, persona, messages, **kwargs):
        self.calls.append(messages)
        value = {"better": "A", "reason": "A is closer to the reference."}
        return Verdict(content=json.dumps(value), parsed=value)


@pytest.fixture
def finetune_config(tmp_path, settings, tiny_dir):
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    (target / "settings.toml").write_text(
        (target / "settings.toml").read_text() + f'\n[finetune]\nbase_model_dir = "{tiny_dir}"\n')
    settings.CONFIG_DIR = target
    return target


@pytest.fixture
def alfred():
    from personas.llm import set_model_manager

    judge = Alfred()
    set_model_manager(judge)
    yield judge
    set_model_manager(None)


@pytest.fixture
def brick_dataset(db):
    ds = datasets.dataset_create(persona="BRICK", name="sums")
    for messages in conversations(8):
        datasets.example_add(dataset=ds, messages=messages)
    datasets.example_set_included(example=ds.examples.order_by("id").first(), included=False)
    return ds


@pytest.mark.django_db
def test_the_fine_tune_form_validates_and_a_job_runs_to_an_evaluation(
        auth_client, brick_dataset, finetune_config, alfred, django_capture_on_commit_callbacks, tiny_dir, settings):
    url = reverse("finetune_new", args=[brick_dataset.pk])
    form = auth_client.get(url).content.decode()
    assert 'name="lora_r"' in form and 'value="8"' in form and str(tiny_dir) in form
    assert "3 of them are held out" in form and 'id="small-dataset-warning"' in form  # 7 examples: 3, not 20
    bad = auth_client.post(url, {**FineTuneJob().hyperparameters, "learning_rate": "5"})
    assert bad.status_code == 422 and "learning_rate" in bad.content.decode() and not FineTuneJob.objects.exists()

    fields = {**FineTuneJob().hyperparameters, "epochs": 2, "learning_rate": 0.005, "eval_fraction": 0.3,
              "eval_max_new_tokens": 6}
    with django_capture_on_commit_callbacks(execute=True):  # Huey is immediate in tests: the job runs here
        response = auth_client.post(url, fields)
    job = FineTuneJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("finetune_detail", args=[job.pk])
    snapshot = Path(job.snapshot_path)
    assert snapshot == Path(settings.VAR_DIR) / "finetune" / str(job.pk) / "data.jsonl"
    assert len(snapshot.read_text().splitlines()) == 7 == job.examples  # included examples only

    job.refresh_from_db()
    assert job.status == "succeeded", job.log + job.error
    assert job.progress == 1.0 and job.total_steps == 8 and job.step == 8  # 4 training examples × 2 epochs
    assert [s for s, _ in job.loss_history] == list(range(1, 9))
    assert (Path(job.adapter_path) / "adapter_model.safetensors").exists()
    assert job.gguf_adapter_path == ""  # the tiny base is not a GGUF
    # 7 examples: the 20 held out by default are capped at half the dataset (3).
    assert len(job.evaluation["examples"]) == 3 and sum(job.evaluation["tally"].values()) == 3
    # Each pair was judged blind in both orders; a judge that always says "A" picked each side once,
    # so every outcome is a tie and the gate stays shut.
    for row in job.evaluation["examples"]:
        shown = [j["shown"] for j in row["judgements"]]
        assert sorted(shown) == [["adapted", "base"], ["base", "adapted"]]
        assert "BRICK" not in "".join(m["content"] for m in alfred.calls[0] if m["role"] == "user").split(
            "Answer A")[1]  # the answers are labelled A/B only, never by which model gave them
    assert job.evaluation["tally"]["tie"] == 3 and len(alfred.calls) == 6
    assert job.evaluation["position"] == {"verdicts": 6, "first": 6}  # the judge's position bias, measured
    assert job.evaluation["gate"]["passed"] is False
    assert job.snapshot_sha256 == hashlib.sha256(snapshot.read_bytes()).hexdigest()
    assert job.snapshot_sha256[:12] in job.log

    page = auth_client.get(reverse("finetune_detail", args=[job.pk])).content.decode()
    assert "chose the answer shown first in 6 of 6 verdicts: it followed the position" in page
    assert 'id="job-progress"' in page and 'value="100"' in page and "<svg" in page and "Finished." in page
    listing = auth_client.get(reverse("finetunes")).content.decode()
    assert f'id="finetune-row-{job.pk}"' in listing and "succeeded" in listing


@pytest.mark.django_db
def test_a_queued_job_can_be_cancelled_and_a_running_one_is_asked_to_stop(auth_client, brick_dataset,
                                                                           finetune_config):
    job = services.finetune_create(dataset=brick_dataset, hyperparameters={})  # on_commit not run: stays queued
    auth_client.post(reverse("finetune_cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == "cancelled" and services.finetune_execute(job_id=job.pk) is None
    running = FineTuneJob.objects.create(persona="BRICK", base_model="x", status="running")
    services.finetune_cancel(job=running)
    running.refresh_from_db()
    assert running.status == "cancelling"


WINNING = {"tally": {"adapted": 18, "base": 1, "tie": 1, "unjudged": 0}}
LOSING = {"tally": {"adapted": 4, "base": 12, "tie": 4, "unjudged": 0}}


def _succeeded_job(tmp_path: Path, name: str, evaluation: dict | None = None) -> FineTuneJob:
    adapter = tmp_path / f"{name}.gguf"
    adapter.write_bytes(b"GGUF")
    return FineTuneJob.objects.create(persona="ROBIN", base_model=str(tmp_path / "base.gguf"), status="succeeded",
                                      gguf_adapter_path=str(adapter), evaluation=evaluation or WINNING)


@pytest.mark.django_db
def test_promote_and_rollback_switch_the_persona_model(auth_client, tmp_path):
    first, second = _succeeded_job(tmp_path, "first"), _succeeded_job(tmp_path, "second")
    assert services.persona_model_override("ROBIN") is None

    auth_client.post(reverse("finetune_promote", args=[first.pk]))
    override = services.persona_model_override("ROBIN")
    assert override["job"] == first.pk and override["lora_path"] == first.gguf_adapter_path
    assert override["base_model"] == first.base_model and services.persona_model_override("BRICK") is None

    auth_client.post(reverse("finetune_promote", args=[second.pk]))
    assert services.persona_model_override("ROBIN")["lora_path"] == second.gguf_adapter_path
    second.refresh_from_db()
    assert second.previous_job_id == first.pk and second.previous_model == f"fine-tune #{first.pk}"

    page = auth_client.get(reverse("finetune_detail", args=[second.pk])).content.decode()
    assert 'id="rollback-job"' in page and f"Roll back to fine-tune #{first.pk}" in page
    auth_client.post(reverse("finetune_rollback", args=[second.pk]))  # one click back
    assert services.persona_model_override("ROBIN")["job"] == first.pk
    auth_client.post(reverse("finetune_rollback", args=[first.pk]))
    assert services.persona_model_override("ROBIN") is None


@pytest.mark.django_db
def test_only_succeeded_jobs_with_a_llama_cpp_adapter_can_be_promoted(tmp_path):
    failed = FineTuneJob.objects.create(persona="BRICK", base_model="x", status="failed")
    with pytest.raises(ValueError, match="only a succeeded job"):
        services.finetune_promote(job=failed)
    no_gguf = FineTuneJob.objects.create(persona="BRICK", base_model="x", status="succeeded")
    with pytest.raises(ValueError, match="no llama.cpp adapter"):
        services.finetune_promote(job=no_gguf)
    assert services.persona_model_override("BRICK") is None


@pytest.mark.django_db(transaction=True)
async def test_job_socket_sends_the_current_state_on_connect_and_live_updates():
    from django.conf import settings
    from django.test import Client

    from a4ps_site.asgi import application

    @database_sync_to_async
    def setup():
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(username="ft-ws", password="pw-123456789")
        client = Client()
        client.force_login(user)
        job = FineTuneJob.objects.create(persona="BRICK", base_model="x", status="running", step=3, total_steps=10,
                                         progress=0.27, loss_history=[[1, 2.0], [2, 1.5], [3, 1.2]])
        return job, f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()

    job, cookie = await setup()
    communicator = WebsocketCommunicator(application, f"/ws/finetunes/{job.pk}/",
                                         headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie)])
    connected, _ = await communicator.connect()
    assert connected
    first = await communicator.receive_from(timeout=5)
    assert 'id="finetune-status"' in first and 'hx-swap-oob="true"' in first and 'data-step="3"' in first
    assert "<path" in first  # the loss chart

    await database_sync_to_async(services._update)(job.pk, step=4, progress=0.36, log_text="step 4/10")
    live = await communicator.receive_from(timeout=5)
    assert 'data-step="4"' in live and "step 4/10" in live
    await communicator.send_to(text_data=json.dumps({"resume_after": 0}))  # a reconnecting page catches up
    assert 'data-step="4"' in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


@pytest.fixture(scope="module")
def smollm_gguf(tmp_path_factory) -> Path:
    from personas.inference.embedded_backend import ensure_packaged_gguf

    return ensure_packaged_gguf(tmp_path_factory.mktemp("models"), "smollm2-135m")


@pytest.mark.django_db
def test_a_gguf_base_is_dequantised_once_and_later_jobs_start_from_the_cache(
        auth_client, smollm_gguf, tmp_path, settings, alfred, django_capture_on_commit_callbacks):
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "settings.toml").write_text(
        (config / "settings.toml").read_text() + f'\n[finetune]\nbase_model_dir = "{smollm_gguf}"\n')
    settings.CONFIG_DIR = config
    dataset = datasets.dataset_create(persona="BRICK", name="sums")
    for messages in conversations(4):
        datasets.example_add(dataset=dataset, messages=messages)
    hyper = {"max_steps": 1, "eval_fraction": 0.25, "eval_max_new_tokens": 4}
    page = auth_client.get(reverse("finetunes")).content.decode()
    assert 'id="base-cache"' in page and "none yet" in page and 'id="clear-base-cache"' not in page

    jobs = []
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):  # Huey is immediate in tests
            job = services.finetune_create(dataset=dataset, hyperparameters=hyper)
        job.refresh_from_db()
        assert job.status == "succeeded", job.log + job.error
        jobs.append(job)
    first, second = jobs
    assert "Loading and dequantising" in first.log and "Cached the dequantised base" in first.log
    assert "from the dequantised cache" in second.log and "dequantising " not in second.log.replace(
        "no dequantising", "")
    cached = ft.cached_bases(Path(settings.VAR_DIR) / "finetune" / "base-cache")
    assert [row["source"] for row in cached] == [smollm_gguf.name]
    assert cached[0]["digest"] == hashlib.sha256(smollm_gguf.read_bytes()).hexdigest()
    # The adapter trained on the cached copy still fits the GGUF llama.cpp serves.
    assert Path(second.gguf_adapter_path).is_file()

    page = auth_client.get(reverse("finetunes")).content.decode()
    assert smollm_gguf.name in page and 'id="clear-base-cache"' in page
    queued = services.finetune_create(dataset=dataset, hyperparameters=hyper)  # on_commit not run: stays queued
    auth_client.post(reverse("finetune_cache_clear"))
    assert ft.cached_bases(Path(settings.VAR_DIR) / "finetune" / "base-cache")  # refused while a job waits
    services.finetune_cancel(job=queued)
    auth_client.post(reverse("finetune_cache_clear"))
    assert ft.cached_bases(Path(settings.VAR_DIR) / "finetune" / "base-cache") == []


def test_the_cache_setting_is_checked(settings, tmp_path):
    from memory.finetunes.selectors import base_cache_dir

    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    settings.CONFIG_DIR = config
    assert base_cache_dir() == Path(settings.VAR_DIR) / "finetune" / "base-cache"
    base = (config / "settings.toml").read_text()
    (config / "settings.toml").write_text(base + "\n[finetune]\nbase_cache = false\n")
    assert base_cache_dir() is None
    (config / "settings.toml").write_text(base + '\n[finetune]\nbase_cache = "yes"\n')
    with pytest.raises(ValueError, match="finetune.base_cache must be true or false"):
        base_cache_dir()



def test_the_gate_interval_is_wilson_and_opens_only_on_a_clear_win():
    from memory.finetunes import gate

    low, high = gate.wilson(0.5, 20)
    assert (round(low, 3), round(high, 3)) == (0.299, 0.701)
    assert round(gate.wilson(1.0, 5)[0], 3) == 0.566
    assert gate.gate({"adapted": 0, "base": 20, "tie": 0})["passed"] is False  # losing
    assert gate.gate({"adapted": 0, "base": 0, "tie": 20})["passed"] is False  # tied
    assert gate.gate({"adapted": 9, "base": 7, "tie": 4})["passed"] is False  # ahead, but within noise
    assert gate.gate({"adapted": 3, "base": 0, "tie": 0})["passed"] is False  # too few to exclude 0.5
    winning = gate.gate({"adapted": 15, "base": 2, "tie": 3, "unjudged": 4})
    assert winning["passed"] is True and winning["n"] == 20 and winning["low"] > 0.5 and not winning["few"]
    assert gate.gate({})["passed"] is False and "nothing shows" in gate.gate({})["why"]
    # Two verdicts make one outcome; opposite preferences mean the judge followed the position.
    assert gate.combine("adapted", "adapted") == "adapted" and gate.combine("adapted", "tie") == "adapted"
    assert gate.combine("adapted", "base") == "tie" and gate.combine("unjudged", "base") == "unjudged"
    assert gate.combine("unjudged", "unjudged") == "unjudged"


class PrefersAdapted:
    """Reads the answers and prefers the one that says "adapted", whichever label it has."""

    def __init__(self) -> None:
        self.orders = []

    def chat(self, persona, messages, **kwargs):
        text = messages[-1]["content"]
        a = text.split("Answer A:\n")[1].split("\n\nAnswer B:")[0]
        self.orders.append("adapted-first" if "adapted" in a else "base-first")
        value = {"better": "A" if "adapted" in a else "B", "reason": "It answers."}
        return Verdict(content=json.dumps(value), parsed=value)


def test_a_better_adapter_wins_blind_comparisons_shown_in_both_orders_in_random_first_order():
    rows = [{"prompt": f"q{i}", "reference": "r", "base": f"base answer {i}", "adapted": f"adapted answer {i}"}
            for i in range(12)]
    judge = PrefersAdapted()
    result = services.evaluation_judge(comparisons=rows, persona="BRICK", model=judge, seed=7)
    assert result["tally"] == {"adapted": 12, "base": 0, "tie": 0, "unjudged": 0}
    assert result["gate"]["passed"] is True and result["blind"] is True
    firsts = judge.orders[0::2]
    assert set(firsts) == {"adapted-first", "base-first"}  # which order comes first is drawn, not fixed
    assert all(a != b for a, b in zip(judge.orders[0::2], judge.orders[1::2], strict=True))  # then swapped
    again = PrefersAdapted()
    services.evaluation_judge(comparisons=rows, persona="BRICK", model=again, seed=7)
    assert again.orders == judge.orders  # reproducible from the job's seed


@pytest.mark.django_db
def test_an_adapter_not_shown_better_is_promoted_only_with_a_typed_reason(auth_client, tmp_path, admin_user):
    losing = _succeeded_job(tmp_path, "losing", LOSING)
    page = auth_client.get(reverse("finetune_detail", args=[losing.pk])).content.decode()
    assert 'data-passed="false"' in page and 'id="promote-job"' not in page and 'id="override-form"' in page
    assert "won 4 · tied 4 · lost 12" in page
    listing = auth_client.get(reverse("finetunes")).content.decode()
    assert "won 4 · tied 4 · lost 12" in listing and "not shown better" in listing and "Decide…" in listing

    response = auth_client.post(reverse("finetune_promote", args=[losing.pk]), follow=True)
    assert "To promote it anyway, say why" in response.content.decode()
    auth_client.post(reverse("finetune_promote", args=[losing.pk]), {"reason": "too short"})
    losing.refresh_from_db()
    assert not losing.promoted and services.persona_model_override("ROBIN") is None

    why = "The held-out set is tiny; I read the answers and prefer the adapted ones."
    auth_client.post(reverse("finetune_promote", args=[losing.pk]), {"reason": why})
    losing.refresh_from_db()
    assert losing.promoted and losing.promotion_reason == why and losing.promoted_by is not None
    assert "overriding the gate" in losing.log
    page = auth_client.get(reverse("finetune_detail", args=[losing.pk])).content.decode()
    assert 'id="promotion-override"' in page and why in page

    from memory.finetunes.selectors import finetune_record
    from memory.image import image_capture

    record = image_capture()["adapters"]["records"]["ROBIN"]
    assert record == finetune_record(losing)
    assert record["promotion_reason"] == why and record["evaluation"]["passed"] is False
    assert record["promoted_by"] == losing.promoted_by.get_username()

    winner = _succeeded_job(tmp_path, "winner")
    auth_client.post(reverse("finetune_promote", args=[winner.pk]))  # the gate is open: no reason asked
    winner.refresh_from_db()
    assert winner.promoted and winner.promotion_reason == "" and winner.previous_job_id == losing.pk


@pytest.fixture
def scripted_persona_model():
    from personas.llm import set_model_manager
    from tests.personas.scripted import ScriptedModel

    model = ScriptedModel()
    set_model_manager(model)
    yield model
    set_model_manager(None)


@pytest.mark.django_db
def test_compare_in_chat_asks_base_then_adapter_blind_and_the_votes_join_the_gate(
        auth_client, tmp_path, scripted_persona_model, django_capture_on_commit_callbacks):
    job = _succeeded_job(tmp_path, "cmp", {"tally": {"adapted": 3, "base": 0, "tie": 0, "unjudged": 0}})
    job.persona = "BRICK"
    job.save()
    assert services.job_gate(job)["passed"] is False  # 3 wins alone do not exclude "no difference"
    url = reverse("finetune_compare", args=[job.pk])
    page = auth_client.get(url).content.decode()
    assert 'id="compare-form"' in page and 'id="no-comparisons"' in page

    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):  # the worker (Huey, immediate) answers here
            response = auth_client.post(url, {"prompt": "What is two plus two?"})
        assert response.status_code == 302
    comparisons = list(job.comparisons.order_by("id"))
    assert [c.status for c in comparisons] == ["done"] * 3
    calls = scripted_persona_model.calls
    assert all(c["adapter"]["base_model"] == job.base_model and c["persona"] == "BRICK" for c in calls)
    for c, (first, second) in zip(comparisons, zip(calls[0::2], calls[1::2], strict=True), strict=True):
        # asked in label order (A, then B): the arrival order on the page gives nothing away
        expected = [job.gguf_adapter_path, ""] if c.adapted_is_a else ["", job.gguf_adapter_path]
        assert [first["adapter"]["lora_path"], second["adapter"]["lora_path"]] == expected
    for c in comparisons:
        adapted, base = (c.answer_a, c.answer_b) if c.adapted_is_a else (c.answer_b, c.answer_a)
        assert adapted == "Four: two and two, counted together." and base == "Two plus two is four, by counting."

    page = auth_client.get(url).content.decode()
    assert page.count("<h3>A</h3>") == 3 and "<h3>A — " not in page  # blind until voted
    for c in comparisons:
        with django_capture_on_commit_callbacks(execute=True):
            card = auth_client.post(reverse("comparison_vote", args=[c.pk]), {"vote": c.label_of_adapted},
                                    HTTP_HX_REQUEST="true").content.decode()
        assert "the adapter is better" in card and "<h3>A — " in card  # revealed after the vote
    gate = services.job_gate(job)
    # The same person on the same prompt three times is one vote, not three.
    assert gate["votes"] == {"adapted": 1, "base": 0, "tie": 0} and gate["n"] == 4 and gate["passed"] is True
    detail = auth_client.get(reverse("finetune_detail", args=[job.pk])).content.decode()
    assert 'id="gate-votes"' in detail and 'id="promote-job"' in detail

    # A person may change their mind: their newest vote on a prompt stands.
    auth_client.post(reverse("comparison_vote", args=[comparisons[-1].pk]), {"vote": "tie"})
    assert services.job_gate(job)["votes"] == {"adapted": 0, "base": 0, "tie": 1}


@pytest.mark.django_db
def test_compare_in_chat_refuses_bad_input_and_loses_nothing(auth_client, tmp_path, scripted_persona_model):
    job = _succeeded_job(tmp_path, "cmp2")
    url = reverse("finetune_compare", args=[job.pk])
    empty = auth_client.post(url, {"prompt": "   "})
    assert empty.status_code == 422 and "Write a prompt" in empty.content.decode()
    long = auth_client.post(url, {"prompt": "x" * 4001})
    assert long.status_code == 422 and "at most 4,000" in long.content.decode()
    assert 'x' * 4001 in long.content.decode()  # the text is still in the box
    no_adapter = FineTuneJob.objects.create(persona="BRICK", base_model="x", status="succeeded")
    refused = auth_client.post(reverse("finetune_compare", args=[no_adapter.pk]), {"prompt": "hi"})
    assert refused.status_code == 422 and "no llama.cpp adapter" in refused.content.decode()
    assert not services.ChatComparison.objects.exists()

    queued = services.comparison_create(job=job, prompt="hi")  # not run: still queued
    with pytest.raises(ValueError, match="Both answers must be in"):
        services.comparison_vote(comparison=queued, vote="A")
    queued.status = "done"
    queued.save()
    with pytest.raises(ValueError, match="A vote is A, B or tie"):
        services.comparison_vote(comparison=queued, vote="C")


@pytest.mark.django_db
def test_a_failing_model_is_shown_on_the_comparison(tmp_path):
    from personas.inference import ModelError

    class Down:
        def chat(self, *args, **kwargs):
            raise ModelError("the model server is not running")

    job = _succeeded_job(tmp_path, "cmp3")
    comparison = services.comparison_create(job=job, prompt="hi")
    done = services.comparison_execute(comparison_id=comparison.pk, model=Down())
    assert done.status == "failed" and "not running" in done.error
    html = services.comparison_render(comparison=done)
    assert 'role="alert"' in html and "not running" in html and "vote-a-" not in html


def test_a_judge_that_cannot_answer_leaves_pairs_unjudged_and_the_gate_shut():
    class BrokerAway:
        def chat(self, *args, **kwargs):
            raise ConnectionError("Error 2 connecting to broker.sock")

    rows = [{"prompt": "q", "reference": "r", "base": "b", "adapted": "a"}] * 3
    result = services.evaluation_judge(comparisons=rows, persona="BRICK", model=BrokerAway())
    assert result["tally"] == {"adapted": 0, "base": 0, "tie": 0, "unjudged": 3}
    assert "ConnectionError" in result["examples"][0]["judgements"][0]["reason"]
    assert result["gate"]["passed"] is False and len(result["examples"]) == 3  # the answers are kept


class KnowsTasks:
    """Answers the evals tasks right only with the weights it is told are better."""

    def __init__(self, better: str) -> None:
        from forge.evals.suites import load_tasks

        self.better, self.calls = better, []
        self.answers = {item.task: (", ".join(item.answer) if isinstance(item.answer, tuple) else str(item.answer))
                        for item in load_tasks()}

    def chat(self, persona, messages, *, adapter=None, **kwargs):
        self.calls.append((persona, adapter))
        with_adapter = bool(adapter and adapter.get("lora_path"))
        right = with_adapter == (self.better == "adapted")
        return Verdict(content=self.answers[messages[-1]["content"]] if right else "I cannot say.", parsed=None)


@pytest.mark.django_db
@pytest.mark.parametrize("better", ["adapted", "base"])
def test_the_gate_shuts_when_the_adapter_answers_fewer_tasks_right(auth_client, tmp_path, better):
    from personas.llm import set_model_manager

    job = _succeeded_job(tmp_path, f"tasks-{better}")  # held-out comparisons: a clear win
    model = KnowsTasks(better)
    set_model_manager(model)
    try:
        lines: list[str] = []
        tasks = services._task_check(job, Path(job.gguf_adapter_path), lines.append)
    finally:
        set_model_manager(None)
    assert tasks["base"]["n"] == tasks["adapted"]["n"] == 8
    assert {p for p, _ in model.calls} == {"ROBIN"} and len(model.calls) == 16
    assert [a["lora_path"] for _, a in model.calls] == [""] * 8 + [job.gguf_adapter_path] * 8
    right, wrong = (tasks["adapted"], tasks["base"]) if better == "adapted" else (tasks["base"], tasks["adapted"])
    assert right["passed"] == 8 and wrong["passed"] == 0
    assert any("8 of 8 right" in line for line in lines)
    job.evaluation = {**job.evaluation, "tasks": tasks}
    job.save()
    verdict = services.job_gate(job)
    assert verdict["tasks"]["measured"] and verdict["passed"] is (better == "adapted")
    page = auth_client.get(reverse("finetune_detail", args=[job.pk])).content.decode()
    assert 'id="gate-tasks"' in page and ("no drop" in page if better == "adapted" else "task accuracy drops" in page)
    assert ('id="promote-job"' in page) is (better == "adapted")


def test_the_task_subset_spans_the_categories_and_skips_memory_document_and_web_tasks():
    from forge.evals.services import task_subset
    from forge.evals.suites import load_tasks

    subset = task_subset(8)
    assert len(subset) == 8 and all(not item.needs or item.needs == ("tool",) for item in subset)
    categories = {item.category for item in load_tasks() if not set(item.needs) - {"tool"}}
    assert len({item.category for item in subset}) == min(8, len(categories))
    assert [i.id for i in task_subset(8)] == [i.id for i in subset]  # the same every time


def test_ollama_cannot_pretend_to_answer_with_an_adapter_it_does_not_have(tmp_path):
    from personas.inference import ModelError, ModelManager, ModelsConfig

    manager = ModelManager(ModelsConfig.from_dict({"backend": "ollama", "ollama_host": "http://127.0.0.1:9"}),
                           var_dir=tmp_path)
    try:
        with pytest.raises(ModelError, match="has no Ollama model"):
            manager.chat("BRICK", [{"role": "user", "content": "hi"}],
                         adapter={"base_model": "b.gguf", "lora_path": "a.gguf", "ollama_model": ""})
    finally:
        manager.close()


@pytest.mark.django_db
def test_the_review_queue_without_htmx_skips_and_refuses_a_bad_id(auth_client):
    from memory.models import CuratorVerdict
    from personas.models import Run

    older, newer = (CuratorVerdict.objects.create(run=Run.objects.create(task=f"t{i}", status="done"),
                                                  scores={"reasoning": 5}, total=5.0) for i in range(2))
    skipped = auth_client.post(reverse("dataset_review"), {"verdict": newer.pk, "skip": "1"}, follow=True)
    assert f'data-verdict="{older.pk}"' in skipped.content.decode()
    assert auth_client.post(reverse("dataset_review"), {"verdict": "x"}).status_code == 404


def test_clearing_the_cache_also_removes_half_written_entries(tmp_path):
    half = tmp_path / ".abc.123.tmp"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"x" * 10)
    assert ft.unfinished_cache_entries(tmp_path) == [half] and ft.cached_bases(tmp_path) == []


def test_a_gguf_digest_comes_from_its_fresh_verification_sidecar_or_is_computed(tmp_path):
    import json as _json

    from personas.inference.embedded_backend import gguf_sha256

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF weights")
    real = hashlib.sha256(b"GGUF weights").hexdigest()
    assert gguf_sha256(gguf) == real
    st = gguf.stat()
    sidecar = tmp_path / "m.gguf.verified.json"
    sidecar.write_text(_json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": "recorded"}))
    assert gguf_sha256(gguf) == "recorded"  # checked before: not hashed again
    gguf.write_bytes(b"other weights!")
    assert gguf_sha256(gguf) == hashlib.sha256(b"other weights!").hexdigest()  # changed since: hashed
