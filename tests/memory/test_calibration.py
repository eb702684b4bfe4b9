"""Judge calibration: κ and ρ on fixed tables, the review queue, and the gate on training and export."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.urls import reverse

from memory.datasets import calibration
from memory.datasets import services as datasets
from memory.finetunes import services as finetunes
from memory.models import CuratorVerdict, VerdictLabel
from personas.models import Run

ROOT = Path(__file__).resolve().parents[2]


def test_cohen_kappa_on_a_fixed_table():
    # judge yes & person yes 20, yes/no 5, no/yes 10, no/no 15: observed 0.70, chance 0.50, κ 0.40
    pairs = [(True, True)] * 20 + [(True, False)] * 5 + [(False, True)] * 10 + [(False, False)] * 15
    assert calibration.cohen_kappa(pairs) == pytest.approx(0.4)
    assert calibration.cohen_kappa([(True, True), (False, False), (True, False), (False, True)]) == pytest.approx(0.0)
    assert calibration.cohen_kappa([(True, True)] * 10) is None  # no variation: undefined, not "perfect"
    assert calibration.cohen_kappa([(True, True)] * 2) is None  # too few


def test_spearman_on_a_fixed_table_with_ties():
    from scipy.stats import spearmanr

    xs, ys = [1, 2, 3, 4, 5], [5, 6, 7, 8, 7]
    assert calibration.spearman(xs, ys) == pytest.approx(8 / 95 ** 0.5)  # 0.8208, ties averaged
    assert calibration.spearman(xs, ys) == pytest.approx(spearmanr(xs, ys).statistic)
    judge, person = [7, 8, 3, 9, 5, 5, 6, 2], [6, 9, 2, 7, 5, 4, 6, 3]
    assert calibration.spearman(judge, person) == pytest.approx(spearmanr(judge, person).statistic)
    assert calibration.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert calibration.spearman([4, 4, 4], [1, 2, 3]) is None


def _verdict(i: int, *, accepted: bool, scores: dict[str, int]) -> CuratorVerdict:
    run = Run.objects.create(task=f"Task {i}: what is {i} + {i}?", status=Run.Status.DONE,
                             final_answer=f"It is {2 * i}.")
    total = sum(scores.values()) / len(scores)
    return CuratorVerdict.objects.create(run=run, scores=scores, total=total, accepted=accepted, rationale="r")


@pytest.mark.django_db
def test_the_review_queue_labels_one_verdict_after_another_and_agreement_follows(auth_client, user):
    verdicts = [_verdict(i, accepted=i % 2 == 0, scores={"reasoning": 4 + i, "persona_fidelity": 6,
                                                          "helpfulness": 3 + i}) for i in range(4)]
    CuratorVerdict.objects.create(run=Run.objects.create(task="t", status=Run.Status.DONE), error="unreadable")
    listing = auth_client.get(reverse("datasets")).content.decode()
    assert 'id="review-link"' in listing and "Review verdicts (4)" in listing and "No label yet" in listing

    page = auth_client.get(reverse("dataset_review")).content.decode()
    assert f'data-verdict="{verdicts[-1].pk}"' in page and "4 to label" in page  # newest first
    assert "ALFRED scored" not in page  # the judge's scores only after the person answers
    htmx = {"HTTP_HX_REQUEST": "true"}
    url = reverse("dataset_review")
    # Agree on the two newest (3: rejected → down, 2: accepted → up), skip 1, disagree on 0.
    card = auth_client.post(url, {"verdict": verdicts[3].pk, "thumb": "down", "score_reasoning": "8",
                                  "score_helpfulness": "6"}, **htmx).content.decode()
    assert f'data-verdict="{verdicts[2].pk}"' in card and "you said <strong>not good</strong>" in card
    assert "ALFRED scored it 6.3 and rejected it (reasoning 7, persona fidelity 6, helpfulness 6)" in card
    assert "(reasoning 8, helpfulness 6)" in card
    card = auth_client.post(url, {"verdict": verdicts[2].pk, "thumb": "up", "score_reasoning": "7",
                                  "score_helpfulness": "5"}, **htmx).content.decode()
    card = auth_client.post(url, {"verdict": verdicts[1].pk, "skip": "1"}, **htmx).content.decode()
    assert f'data-verdict="{verdicts[0].pk}"' in card
    bad = auth_client.post(url, {"verdict": verdicts[0].pk, "thumb": "", "score_reasoning": "11"}, **htmx)
    assert bad.status_code == 422 and "from 1 to 10" in bad.content.decode()
    assert f'data-verdict="{verdicts[0].pk}"' in bad.content.decode()  # the same run again, nothing saved
    nothing = auth_client.post(url, {"verdict": verdicts[0].pk, "thumb": ""}, **htmx)
    assert nothing.status_code == 422 and "Give a thumb" in nothing.content.decode()
    card = auth_client.post(url, {"verdict": verdicts[0].pk, "thumb": "down", "score_reasoning": "5"},
                            **htmx).content.decode()
    assert 'id="review-done"' not in card and f'data-verdict="{verdicts[1].pk}"' in card  # the skipped one is back

    assert VerdictLabel.objects.count() == 3
    stats = calibration.agreement()
    # thumbs: (rejected, down) (accepted, up) (accepted, down): 2 of 3 agree
    assert stats["n"] == 3 and stats["agree"] == 2
    assert stats["kappa"] == pytest.approx(calibration.cohen_kappa([(False, False), (True, True), (True, False)]))
    reasoning = next(c for c in stats["criteria"] if c["name"] == "reasoning")
    assert reasoning["n"] == 3 and reasoning["rho"] == pytest.approx(calibration.spearman([7, 6, 4], [8, 7, 5]))
    listing = auth_client.get(reverse("datasets")).content.decode()
    assert 'id="agreement-table"' in listing and "(2 agree)" in listing and 'id="agreement-weeks"' in listing

    # Relabelling replaces the person's label rather than adding a second one.
    auth_client.post(url, {"verdict": verdicts[0].pk, "thumb": "up"}, **htmx)
    assert VerdictLabel.objects.count() == 3 and calibration.agreement()["agree"] == 3


@pytest.mark.django_db
def test_the_calibration_gate_holds_training_and_export_until_people_agree_with_the_judge(
        auth_client, user, settings, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    base = (config / "settings.toml").read_text()
    settings.CONFIG_DIR = config
    dataset = datasets.dataset_create(persona="BRICK", name="gated")
    datasets.example_add(dataset=dataset, messages=[{"role": "user", "content": "2+2?"},
                                                    {"role": "assistant", "content": "4"}])
    assert calibration.training_allowed()[0] is True  # off by default
    (config / "settings.toml").write_text(base.replace("[curator]", "[curator]\nmin_agreement = 0.5\nmin_labels = 4", 1)
                                          if "[curator]" in base else
                                          base + "\n[curator]\nmin_agreement = 0.5\nmin_labels = 4\n")
    allowed, why = calibration.training_allowed()
    assert not allowed and "needs 4 thumbs" in why
    with pytest.raises(ValueError, match="needs 4 thumbs"):
        finetunes.finetune_create(dataset=dataset, hyperparameters={})
    refused = auth_client.get(reverse("dataset_export", args=[dataset.pk]), follow=True)
    assert "Export refused" in refused.content.decode()
    listing = auth_client.get(reverse("datasets")).content.decode()
    assert 'data-open="false"' in listing

    # Four thumbs, one disagreeing: κ 0.5 meets the gate; a second disagreement would not.
    for i, (accepted, thumb) in enumerate([(True, 1), (True, 1), (False, -1), (False, 1)]):
        VerdictLabel.objects.create(verdict=_verdict(i, accepted=accepted, scores={"reasoning": 5}), user=user,
                                    thumb=thumb)
    assert calibration.agreement()["kappa"] == pytest.approx(0.5)
    assert calibration.training_allowed()[0] is True
    exported = auth_client.get(reverse("dataset_export", args=[dataset.pk]))
    assert exported.status_code == 200 and b'"messages"' in b"".join(exported.streaming_content)
    VerdictLabel.objects.filter(thumb=1).order_by("id").first().delete()
    VerdictLabel.objects.create(verdict=_verdict(9, accepted=True, scores={"reasoning": 5}), user=user, thumb=-1)
    allowed, why = calibration.training_allowed()
    assert not allowed and "agrees too little" in why

    (config / "settings.toml").write_text(base + "\n[curator]\nmin_agreement = \"high\"\n")
    with pytest.raises(ValueError, match="curator.min_agreement must be a number"):
        calibration.calibration_settings()
    assert "curator.min_agreement must be a number" in auth_client.get(reverse("datasets")).content.decode()
