"""Golden datasets: JSONL export/import round trip, per-line import errors, browsing, toggles, login."""
from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from memory.datasets import services
from memory.models import FineTuneJob, GoldenDataset, GoldenExample

pytestmark = pytest.mark.django_db


def chat(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are BRICK."}, {"role": "user", "content": question},
            {"role": "assistant", "content": answer}]


@pytest.fixture
def dataset():
    ds = services.dataset_create(persona="BRICK", name="hand picked")
    for i in range(3):
        services.example_add(dataset=ds, messages=chat(f"What is {i} + {i}? Ünïcode ✓", f"{2 * i}."), score=7 + i)
    return ds


def test_export_then_import_round_trips_included_examples_only(dataset):
    excluded = dataset.examples.order_by("id").first()
    services.example_set_included(example=excluded, included=False)
    lines = list(services.dataset_export_lines(dataset=dataset))
    assert len(lines) == 2
    assert all(set(json.loads(line)) == {"messages"} for line in lines)

    copy = services.dataset_create(persona="BRICK", name="copy")
    report = services.dataset_import_lines(dataset=copy, lines=[line.encode() for line in lines])
    assert report.imported == 2 and not report.errors
    exported = [json.loads(line)["messages"] for line in lines]
    assert sorted(map(json.dumps, exported)) == sorted(
        json.dumps(m) for m in copy.examples.values_list("messages", flat=True))
    assert excluded.messages not in exported
    # Importing again adds nothing: the same chats are already there.
    again = services.dataset_import_lines(dataset=copy, lines=lines)
    assert again.imported == 0 and again.duplicates == 2


def test_import_reports_every_bad_line_with_its_number_and_keeps_the_good_ones(dataset):
    good = json.dumps({"messages": chat("new question", "new answer")})
    lines = [
        good,                                                       # 1 ok
        "{not json",                                                # 2
        json.dumps({"prompt": "x"}),                                # 3 no messages
        json.dumps({"messages": [{"role": "robot", "content": "hi"}]}),    # 4 bad role
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),  # 5 no answer
        "",                                                         # 6 blank
        json.dumps({"messages": chat("What is 0 + 0? Ünïcode ✓", "0.")}),  # 7 duplicate of an existing one
        b"\xff\xfe broken bytes",                                   # 8 not UTF-8
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}),  # 9
    ]
    report = services.dataset_import_lines(dataset=dataset, lines=lines)
    assert report.imported == 1 and report.duplicates == 1 and report.blank == 1
    errors = dict(report.errors)
    assert sorted(errors) == [2, 3, 4, 5, 8, 9]
    assert "not valid JSON" in errors[2]
    assert '"messages"' in errors[3]
    assert "role 'robot'" in errors[4]
    assert "no assistant message" in errors[5]
    assert "UTF-8" in errors[8]
    assert "no text content" in errors[9]
    assert report.lines == len(lines)  # nothing silently dropped
    assert dataset.examples.filter(text__contains="new answer").exists()


def test_import_page_shows_the_errors_and_imports_the_rest(auth_client, dataset):
    body = "\n".join([json.dumps({"messages": chat("fresh", "answer")}), "{oops"]).encode()
    upload = SimpleUploadedFile("data.jsonl", body, content_type="application/jsonl")
    response = auth_client.post(reverse("dataset_import", args=[dataset.pk]), {"file": upload})
    assert response.status_code == 422
    html = response.content.decode()
    assert "1 imported" in html and 'data-line="2"' in html and "line 2: not valid JSON" in html
    assert dataset.examples.count() == 4


def test_examples_table_searches_filters_and_paginates(auth_client, dataset):
    for i in range(30):
        services.example_add(dataset=dataset, messages=chat(f"filler {i}", "ok"), score=3)
    url = reverse("dataset_detail", args=[dataset.pk])
    page = auth_client.get(url).content.decode()
    assert "33 examples" in page and "Page 1 of 2" in page
    found = auth_client.get(url, {"q": "1 + 1"}).content.decode()
    assert "1 example " in found and "What is 1 + 1?" in found and "filler" not in found
    scored = auth_client.get(url, {"score_min": "8"}).content.decode()
    assert "2 examples" in scored
    partial = auth_client.get(url, {"score_max": "4", "page": "2"}, HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<section id="example-table"') and "Page 2 of 2" in partial
    other = services.dataset_create(persona="ROBIN", name="robin's")
    services.example_add(dataset=other, messages=chat("robin question", "robin answer"))
    everywhere = auth_client.get(reverse("dataset_examples"), {"persona": "ROBIN"}).content.decode()
    assert "robin question" in everywhere and "filler" not in everywhere


def test_toggle_excludes_an_example_from_the_export(auth_client, dataset):
    example = dataset.examples.order_by("id").first()
    response = auth_client.post(reverse("dataset_example_toggle", args=[example.pk]), {"included": "0"},
                                HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and f'id="example-{example.pk}"' in response.content.decode()
    example.refresh_from_db()
    assert not example.included
    export = auth_client.get(reverse("dataset_export", args=[dataset.pk]))
    body = b"".join(export.streaming_content).decode()
    assert export["Content-Disposition"].endswith('.jsonl"') and len(body.splitlines()) == 2
    detail = auth_client.get(reverse("dataset_example", args=[example.pk])).content.decode()
    assert "excluded" in detail and "What is 0 + 0?" in detail


def test_toggle_needs_post_and_csrf(client, user, dataset):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    example = dataset.examples.first()
    assert strict.post(reverse("dataset_example_toggle", args=[example.pk]), {"included": "0"}).status_code == 403
    assert strict.get(reverse("dataset_example_toggle", args=[example.pk])).status_code == 405


def test_every_page_requires_login(client, dataset):
    example = dataset.examples.first()
    job = FineTuneJob.objects.create(persona="BRICK", base_model="x", dataset=dataset)
    urls = [
        reverse("datasets"), reverse("dataset_detail", args=[dataset.pk]), reverse("dataset_examples"),
        reverse("dataset_example", args=[example.pk]), reverse("dataset_export", args=[dataset.pk]),
        reverse("finetune_new", args=[dataset.pk]), reverse("finetunes"), reverse("finetune_detail", args=[job.pk]),
        reverse("finetune_compare", args=[job.pk]), reverse("dataset_review"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
    for name, args in [("dataset_curate", []), ("dataset_import", [dataset.pk]), ("finetune_promote", [job.pk]),
                       ("finetune_cancel", [job.pk]), ("finetune_rollback", [job.pk]),
                       ("dataset_example_toggle", [example.pk]), ("finetune_cache_clear", []),
                       ("comparison_vote", [1])]:
        response = client.post(reverse(name, args=args))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], name


@pytest.mark.django_db(transaction=True)
async def test_finetune_socket_refuses_anonymous_users():
    from a4ps_site.asgi import application

    job = await FineTuneJob.objects.acreate(persona="BRICK", base_model="x")
    communicator = WebsocketCommunicator(application, f"/ws/finetunes/{job.pk}/",
                                         headers=[(b"origin", b"http://127.0.0.1:8000")])
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


def test_datasets_page_lists_sizes_and_the_curator(auth_client, dataset):
    services.example_set_included(example=dataset.examples.first(), included=False)
    html = auth_client.get(reverse("datasets")).content.decode()
    assert f'id="dataset-{dataset.pk}"' in html and "hand picked" in html
    assert '<td class="num">3</td>' in html and '<td class="num">2</td>' in html
    assert "Curate now" in html and "7.0" in html
    assert GoldenDataset.objects.count() == 1 and GoldenExample.objects.count() == 3
