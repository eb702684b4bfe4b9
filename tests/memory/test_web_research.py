"""BABS's web research against a local fake search engine and fake pages: off by default; when on, a
knowledge gap makes BABS search, fetch and keep pages in memory, and the answer cites the page; fetches
that must not happen (a redirect to a loopback address, binaries, huge pages, redirect loops) are refused
with their reason and leave nothing in memory."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

from memory.research import fetch as web_fetch
from memory.research.models import WebFetch
from memory.research.services import web_research, web_settings
from memory.services import memory_store
from personas import runs
from personas.llm import set_model_manager
from personas.models import Event
from tests.memory.fake_web import FakeWeb

pytestmark = pytest.mark.django_db(transaction=True)

FERRY = """<html><head><title>Harbour Ferry Timetable</title></head><body><nav>Home · Tickets</nav>
<main><h1>Harbour Ferry</h1><p>The first ferry leaves Pier 7 at 06:40 every weekday.</p>
<p>The last ferry returns at 23:10.</p></main></body></html>"""


def web_on(config_dir, web: FakeWeb, **values) -> None:
    path = config_dir / "settings.toml"
    text = path.read_text()
    settings = {"enabled": "true", "searxng_url": f'"{web.base}"', "allow_hosts": f'["{web.host_port}"]', **values}
    for key, value in settings.items():
        text, n = re.subn(rf"^{key} = [^#\n]*", f"{key} = {value} ", text, count=1, flags=re.MULTILINE)
        assert n == 1, key
    path.write_text(text)


@pytest.fixture
def web():
    with FakeWeb() as fake:
        yield fake


@pytest.fixture
def private_service():
    """Another local server: a service on the machine that fetched pages must not reach."""
    with FakeWeb() as fake:
        fake.page("/secret", "<p>internal admin token 8842</p>")
        yield fake


def test_web_research_is_off_by_default(auth_client, user, scripted_model, personas_seeded, web):
    assert web_settings().enabled is False
    scripted_model.rules["route"] = {"research": True, "reason": "Need facts."}
    run = runs.run_submit(task="When does the first ferry leave Pier 7?", user=user)
    assert not run.steps.filter(kind="web").exists() and web.queries == []
    set_model_manager(None)
    page = auth_client.get(reverse("models")).content.decode()
    assert re.search(r'id="web-research">off', page)


def test_a_knowledge_gap_sends_babs_to_the_web_and_the_answer_cites_the_page(
        auth_client, user, scripted_model, personas_seeded, config_dir, web):
    url = web.page("/ferry", FERRY)
    web.results = [{"url": "/ferry", "title": "Ferry times", "content": "timetable"}]
    web_on(config_dir, web)
    scripted_model.rules.update({"route": {"research": True, "reason": "A timetable fact."},
                                 "research": "The timetable says 06:40 [1].",
                                 "answer": "The first ferry leaves Pier 7 at 06:40 [1]."})
    run = runs.run_submit(task="When does the first ferry leave Pier 7?", user=user)
    run.refresh_from_db()
    assert web.queries == ["When does the first ferry leave Pier 7?"]
    step = run.steps.get(kind="web")
    assert step.data["fetched"][0]["url"] == url and "1 page(s) kept in memory" in step.content
    research = run.steps.get(kind="research")
    assert research.data["memories"][0]["source"] == {
        "kind": "web", "url": url, "label": "Harbour Ferry Timetable",
        "fetched_at": research.data["memories"][0]["source"]["fetched_at"]}
    answer = run.answer_step()
    assert answer.data["cited"] == [1] and answer.data["sources"][0]["url"] == url
    page = auth_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert f'href="{url}" data-source="1">[1]</a>' in page and "Harbour Ferry Timetable" in page
    fetched = WebFetch.objects.get(status="stored")
    assert fetched.run_id == run.pk and fetched.chunk_count >= 1
    assert Event.objects.filter(kind="web.fetched", payload__url=url).exists()
    # Nav text is not content.
    assert "Tickets" not in " ".join(c.text for c in memory_store().get_memory(fetched.memory_id).chunks)
    set_model_manager(None)  # the page describes the real model setup
    models_page = auth_client.get(reverse("models")).content.decode()
    assert "on</span> · SearxNG at " + web.base in models_page and "/ferry" in models_page


def test_a_redirect_to_a_loopback_address_is_refused(scripted_model, config_dir, web, private_service):
    web.redirects["/innocent"] = private_service.base + "/secret"
    web.page("/ferry", FERRY)
    web.results = [{"url": "/innocent", "title": "Looks fine"}, {"url": "/ferry", "title": "Ferry"}]
    web_on(config_dir, web)
    report = web_research(query="ferry times")
    refused = report["refused"][0]
    assert refused["url"] == web.base + "/innocent"
    assert "private, loopback or link-local address (127.0.0.1)" in refused["reason"]
    assert private_service.requests == []  # the redirect was never followed
    assert [f["url"] for f in report["fetched"]] == [web.base + "/ferry"]
    assert Event.objects.filter(kind="web.refused").count() == 1
    texts = " ".join(c.text for m in memory_store().list_summaries() for c in memory_store().get_memory(m.id).chunks)
    assert "8842" not in texts


@pytest.mark.parametrize("setup, reason", [
    (lambda w: w.page("/p", "\x89PNG....", "image/png"), "not a web page (image/png)"),
    (lambda w: w.page("/p", "<p>" + "word " * 400_000 + "</p>"), "1953 KB; the limit is 64 KB"),
    (lambda w: w.redirects.update({"/p": "/q", "/q": "/p"}), "more than 3 redirects"),
    (lambda w: w.page("/p", "<html><body><script>x()</script></body></html>"), "no text found"),
    (lambda w: None, "the server answered 404"),
    (lambda w: w.redirects.update({"/p": "file:///etc/passwd"}), "only http and https pages are fetched"),
])
def test_pages_that_must_not_be_kept_are_refused_with_their_reason(scripted_model, config_dir, web, setup, reason):
    setup(web)
    web.results = [{"url": "/p", "title": "bad"}]
    web_on(config_dir, web, max_page_kb=64)
    report = web_research(query="anything")
    assert report["fetched"] == [] and reason in report["refused"][0]["reason"]
    assert memory_store().count() == 0
    assert WebFetch.objects.get().status == "refused"


def test_the_address_check_refuses_private_networks_without_fetching():
    settings = web_fetch.WebSettings(enabled=True, searxng_url="http://search.local")
    for url in ("http://10.1.2.3/", "http://192.168.0.10/x", "http://[::1]:8080/", "http://169.254.169.254/latest",
                "http://localhost/admin"):
        with pytest.raises(web_fetch.FetchError, match="private, loopback or link-local"):
            web_fetch.fetch(url, settings)
    with pytest.raises(web_fetch.FetchError, match="only http and https"):
        web_fetch.fetch("ftp://example.org/file", settings)


def test_a_provider_that_is_down_is_reported_and_the_run_goes_on(user, scripted_model, personas_seeded, config_dir,
                                                                 web):
    web_on(config_dir, web)
    web.search_status = 500
    scripted_model.rules["route"] = {"research": True, "reason": "facts"}
    run = runs.run_submit(task="When does the first ferry leave Pier 7?", user=user)
    run.refresh_from_db()
    assert run.status == "done" and run.final_answer, run.error
    assert "the search provider answered 500" in run.steps.get(kind="web").content
    assert Event.objects.filter(kind="web.search_failed").exists()


def test_a_search_url_template_that_answers_json_works_too(scripted_model, config_dir, web):
    web.page("/ferry", FERRY)
    web.results = [{"url": "/ferry", "title": "Ferry"}]
    web_on(config_dir, web, provider='"template"', search_url_template=f'"{web.base}/api/find?q={{query}}"',
           results_key='"hits"', url_key='"link"', title_key='"name"')
    report = web_research(query="first ferry")
    assert [f["url"] for f in report["fetched"]] == [web.base + "/ferry"] and web.queries == ["first ferry"]


def test_a_page_fetched_recently_is_reused_not_fetched_again(scripted_model, config_dir, web):
    web.page("/ferry", FERRY)
    web.results = [{"url": "/ferry", "title": "Ferry"}]
    web_on(config_dir, web)
    first = web_research(query="ferry")
    second = web_research(query="ferry again")
    assert first["fetched"][0]["status"] == "stored" and second["fetched"][0]["status"] == "reused"
    assert web.requests.count("/ferry") == 1 and memory_store().count() == 1


def test_bad_web_settings_are_named_on_the_models_page(auth_client, config_dir, scripted_model):
    text = (config_dir / "settings.toml").read_text().replace("enabled = false ", "enabled = true ", 1)
    (config_dir / "settings.toml").write_text(text)
    with pytest.raises(ValueError, match="web.searxng_url is empty"):
        web_settings()
    assert web_research(query="x")["enabled"] is False
    set_model_manager(None)
    page = auth_client.get(reverse("models")).content.decode()
    assert "web.searxng_url is empty" in page


def test_a_malformed_result_address_is_refused_and_the_rest_go_on(scripted_model, config_dir, web):
    web.page("/ferry", FERRY)
    web.results = [{"url": "http://bad-port.example:99999/", "title": "bad"},
                   {"url": "http://" + "x" * 70 + ".example/", "title": "label too long"},
                   {"url": "/ferry", "title": "Ferry"}]
    web_on(config_dir, web)
    report = web_research(query="ferry")
    assert [f["url"] for f in report["fetched"]] == [web.base + "/ferry"]
    assert len(report["refused"]) == 2 and "not a valid address" in report["refused"][0]["reason"]


def test_the_address_check_sees_through_ipv6_forms_of_private_ipv4():
    for address in ("::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::1", "::127.0.0.1"):
        assert not web_fetch._public(__import__("ipaddress").ip_address(address)), address
    assert web_fetch._public(__import__("ipaddress").ip_address("2606:4700:4700::1111"))
