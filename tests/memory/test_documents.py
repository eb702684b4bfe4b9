"""BABS's document library: every file type ingests with its provenance, bad files are refused with a
clear error and leave nothing behind, ingest is all-or-nothing, and the pages and command work."""
from __future__ import annotations

import io
import json
import logging
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from memory.documents import parsing, services
from memory.documents.models import Document
from memory.documents.parsing import DocumentError
from memory.services import memory_search, memory_store
from personas.models import Event
from tests.memory.docfiles import HTML, MARKDOWN, encrypted_pdf, make_docx, make_pdf

pytestmark = pytest.mark.django_db(transaction=True)


def chunks_of(document: Document):
    document.refresh_from_db()
    return memory_store().get_memory(document.memory_id).chunks


def stored_files(var):
    folder = var / "documents"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def add(name: str, data: bytes) -> Document:
    document, created = services.document_add(name=name, data=data)
    assert created
    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED, document.error
    return document


def set_documents(config_dir, **values) -> None:
    """Change keys of settings.toml (each name is unique to one section)."""
    path = config_dir / "settings.toml"
    text = path.read_text()
    for key, value in values.items():
        text, n = re.subn(rf"^{key} = [^#\n]*", f"{key} = {value} ", text, count=1, flags=re.MULTILINE)
        assert n == 1, key
    path.write_text(text)


def small_chunks(config_dir, chars: int, overlap: int = 0) -> None:
    set_documents(config_dir, chunk_chars=chars, overlap_chars=overlap)


def test_markdown_chunks_keep_their_heading_trail_and_offsets(scripted_model, config_dir):
    small_chunks(config_dir, 120)
    document = add("orchard.md", MARKDOWN.encode())
    assert document.title == "Orchard Cooperative Handbook" and document.kind == "markdown"
    chunks = chunks_of(document)
    assert document.chunk_count == len(chunks) >= 3
    tools = next(c for c in chunks if "5512" in c.text)
    assert tools.metadata["heading"] == "Orchard Cooperative Handbook › Harvest › Tools"
    assert tools.metadata["document"] == document.pk
    # The offsets point at the chunk's text inside the document's text (below the chunk's context line).
    text, _ = parsing.split(parsing.parse("orchard.md", MARKDOWN.encode()), chunk_chars=120, overlap_chars=0)
    for chunk in chunks:
        body = chunk.text.split("\n", 1)[1]
        assert text[chunk.metadata["start"]:chunk.metadata["end"]] == body
    summary = memory_store().get_memory(document.memory_id).summary
    assert "Orchard Cooperative Handbook" in summary and "Harvest" in summary


def test_a_long_markdown_file_splits_on_its_sections_with_overlap(scripted_model, config_dir):
    small_chunks(config_dir, 300, 60)
    body = "\n\n".join(f"## Section {i}\n\n" + " ".join(f"Fact {i}.{j} is about topic {i}." for j in range(12))
                       for i in range(6))
    document = add("long.md", f"# Long file\n\n{body}\n".encode())
    chunks = chunks_of(document)
    assert len(chunks) >= 6 and all(len(c.text) <= 300 + 80 for c in chunks)  # + the context line
    headings = {c.metadata["heading"] for c in chunks}
    assert {f"Long file › Section {i}" for i in range(6)} <= headings
    starts = [c.metadata["start"] for c in chunks]
    assert starts == sorted(starts)
    overlapping = [a for a, b in zip(chunks, chunks[1:]) if b.metadata["start"] < a.metadata["end"]]
    assert overlapping, "no two neighbouring chunks overlap"


def test_pdf_chunks_know_their_pages(scripted_model):
    data = make_pdf([["The reactor manual, first page.", "Coolant pressure must stay below 41 bar."],
                     ["Second page.", "The emergency valve is painted orange."]], title="Reactor Manual")
    document = add("manual.pdf", data)
    assert document.title == "Reactor Manual" and document.pages == 2 and document.kind == "pdf"
    chunks = chunks_of(document)
    pages = {c.metadata["page"] for c in chunks} | {c.metadata.get("page_end") for c in chunks}
    assert {1, 2} <= pages
    hits = memory_search(query="emergency valve colour orange", k=3)
    assert hits[0]["source"]["kind"] == "document" and hits[0]["source"]["document"] == document.pk
    assert "page" in hits[0]["source"]["label"]


def test_html_keeps_the_main_text_without_scripts_menus_or_footers(scripted_model, config_dir):
    small_chunks(config_dir, 80)
    document = add("ferry.html", HTML.encode())
    assert document.title == "Harbour Ferry Timetable"
    text = " ".join(c.text for c in chunks_of(document))
    assert "06:40" in text and "3.20 euros" in text and "Bicycles travel free" in text
    for noise in ("do not index me", "Menu link text", "Footer words", "color: red"):
        assert noise not in text
    assert any(c.metadata["heading"].endswith("Fares") for c in chunks_of(document) if "3.20" in c.text)


def test_docx_headings_paragraphs_and_tables(scripted_model, config_dir):
    small_chunks(config_dir, 60)
    data = make_docx([("Lab Safety", 1), ("Goggles are worn at all times.", 0), ("Chemicals", 2),
                      ("Acids are stored in cabinet C4.", 0)], table=[["Room", "Warden"], ["B12", "Ines Duarte"]])
    document = add("safety.docx", data)
    assert document.title == "Lab Safety" and document.kind == "docx"
    chunks = chunks_of(document)
    joined = " ".join(c.text for c in chunks)
    assert "cabinet C4" in joined and "B12 | Ines Duarte" in joined
    assert any("Chemicals" in c.metadata["heading"] for c in chunks if "C4" in c.text)


def test_plain_text_in_an_older_encoding_is_read(scripted_model):
    document = add("notes.txt", "Café opening: 7 o'clock.\n\nThe key is under the mat.".encode("cp1252"))
    assert "Café" in " ".join(c.text for c in chunks_of(document))


@pytest.mark.parametrize("name, data, message", [
    ("empty.txt", b"", "the file is empty"),
    ("blank.md", b"\n\n   \n", "no text found"),
    ("scan.pdf", make_pdf([[]]), "no text found in the file (a scanned PDF"),
    ("locked.pdf", encrypted_pdf(), "the PDF is encrypted; remove its password"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage", "the PDF could not be read"),
    ("fake.pdf", b"hello, I am not a PDF", "not a PDF file"),
    ("broken.docx", b"PK\x03\x04 not really a zip", "not a DOCX file"),
    ("binary.txt", b"\x00\x01\x02\xff\xfe\x00" * 20, "binary file"),
    ("sheet.xlsx", b"whatever", "unsupported type .xlsx"),
    ("README", b"text", "unsupported type (no extension)"),
])
def test_a_bad_file_is_refused_with_its_reason_and_leaves_nothing(scripted_model, isolated_var, name, data, message):
    with pytest.raises(DocumentError, match=None) as refused:
        services.document_add(name=name, data=data)
    assert message in str(refused.value) and name in str(refused.value)
    assert Document.objects.count() == 0 and stored_files(isolated_var) == []
    assert memory_store().count() == 0


def test_limits_come_from_settings_and_are_named_in_the_error(scripted_model, config_dir, isolated_var):
    set_documents(config_dir, max_file_mb=0.001, max_pages=1)
    with pytest.raises(DocumentError, match=r"the limit is 0.001 MB \(documents.max_file_mb\)"):
        services.document_add(name="big.txt", data=b"x " * 1000)
    with pytest.raises(DocumentError, match=r"2 pages; the limit is 1 \(documents.max_pages\)"):
        services.check_file("two.pdf", make_pdf([["one"], ["two"]]))
    assert Document.objects.count() == 0 and stored_files(isolated_var) == []


def test_the_same_file_is_kept_once(scripted_model):
    first = add("a.md", MARKDOWN.encode())
    again, created = services.document_add(name="copy-of-a.md", data=MARKDOWN.encode())
    assert not created and again.pk == first.pk and Document.objects.count() == 1
    assert memory_store().count() == 1


def test_an_ingest_that_fails_half_way_leaves_nothing_in_memory(scripted_model, config_dir):
    small_chunks(config_dir, 120)
    text = "\n\n".join(f"Paragraph {i} tells fact number {i} about the lighthouse." for i in range(80))
    real_embed = scripted_model.embed
    calls = []

    def failing_embed(texts):
        calls.append(len(texts))
        if len(calls) == 2:
            raise RuntimeError("the embedding model crashed")
        return real_embed(texts)

    scripted_model.embed = failing_embed
    document, _ = services.document_add(name="lighthouse.txt", data=text.encode())
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED and "the embedding model crashed" in document.error
    assert memory_store().count() == 0 and memory_store().count(level=3) == 0
    assert Event.objects.filter(kind="document.failed").exists()
    scripted_model.embed = real_embed  # re-index once the model works again
    services.document_reindex(document=document)
    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED and memory_store().count(level=3) == document.chunk_count


def test_reindex_replaces_the_chunks_and_delete_removes_everything(scripted_model, isolated_var):
    document = add("orchard.md", MARKDOWN.encode())
    old_memory, n = document.memory_id, document.chunk_count
    services.document_reindex(document=document)
    document.refresh_from_db()
    assert document.memory_id != old_memory and document.chunk_count == n
    assert memory_store().count() == 1 and memory_store().count(level=3) == n
    removed = services.document_delete(document=document)
    assert removed == n and memory_store().count() == 0 and memory_store().count(level=3) == 0
    assert Document.objects.count() == 0 and stored_files(isolated_var) == []


def test_a_document_deleted_while_it_is_indexed_leaves_nothing(scripted_model, isolated_var):
    text = "\n\n".join(f"Paragraph {i} about tides and the moon." for i in range(200))
    document, _ = services.document_add(name="tides.txt", data=text.encode(), enqueue=False)
    real_embed = scripted_model.embed

    def embed_then_delete(texts):
        Document.objects.filter(pk=document.pk).delete()  # a person pressed Delete meanwhile
        return real_embed(texts)

    scripted_model.embed = embed_then_delete
    assert services.document_ingest(document_id=document.pk) is None
    assert memory_store().count() == 0 and memory_store().count(level=3) == 0


def test_pages_need_login(client, scripted_model):
    document = add("orchard.md", MARKDOWN.encode())
    for url in (reverse("documents"), reverse("document_rows"), reverse("document_detail", args=[document.pk])):
        assert client.get(url).status_code == 302
    for url in (reverse("document_reindex", args=[document.pk]), reverse("document_delete", args=[document.pk])):
        assert client.post(url).status_code == 302
    refused = client.post(reverse("document_upload"), {"file": SimpleUploadedFile("a.txt", b"hi")})
    assert refused.status_code == 401 and Document.objects.count() == 1


def test_upload_api_answers_per_file(auth_client, scripted_model):
    url = reverse("document_upload")
    ok = auth_client.post(url, {"file": SimpleUploadedFile("orchard.md", MARKDOWN.encode())})
    assert ok.status_code == 201 and ok.json()["created"] is True and ok.json()["status"] == "queued"
    same = auth_client.post(url, {"file": SimpleUploadedFile("again.md", MARKDOWN.encode())})
    assert same.status_code == 200 and "already in the library" in same.json()["message"]
    bad = auth_client.post(url, {"file": SimpleUploadedFile("locked.pdf", encrypted_pdf())})
    assert bad.status_code == 400 and "encrypted" in bad.json()["error"] and bad.json()["name"] == "locked.pdf"
    assert auth_client.post(url).status_code == 400
    assert auth_client.get(url).status_code == 405
    assert Document.objects.count() == 1


def test_library_page_lists_and_the_form_post_reports_each_file(auth_client, scripted_model):
    empty = auth_client.get(reverse("documents")).content.decode()
    assert "The library is empty" in empty and 'type="file"' in empty and "multiple" in empty
    page = auth_client.post(reverse("documents"), {"files": [
        SimpleUploadedFile("orchard.md", MARKDOWN.encode()), SimpleUploadedFile("empty.txt", b"")]},
        follow=True).content.decode()
    assert "orchard.md: added" in page and "empty.txt: the file is empty" in page
    assert "Orchard Cooperative Handbook" in page and "indexed" in page


def test_chunk_view_opens_the_page_of_a_cited_chunk(auth_client, scripted_model, config_dir):
    small_chunks(config_dir, 100)
    text = "\n\n".join(f"Entry {i}: the locker {i} belongs to member {1000 + i}." for i in range(90))
    document = add("lockers.txt", text.encode())
    chunks = chunks_of(document)
    assert len(chunks) > 30  # more than one page of chunks
    last = chunks[-1]
    page = auth_client.get(reverse("document_detail", args=[document.pk]), {"chunk": last.id}).content.decode()
    assert f'id="chunk-{last.id}"' in page and "cited" in page and "Page 2 of" in page
    first_page = auth_client.get(reverse("document_detail", args=[document.pk])).content.decode()
    assert f'id="chunk-{chunks[0].id}"' in first_page and f'id="chunk-{last.id}"' not in first_page
    missing = auth_client.get(reverse("document_detail", args=[document.pk + 99]))
    assert missing.status_code == 404


def test_docs_ingest_command_adds_a_folder_and_reports_refusals(scripted_model, tmp_path):
    folder = tmp_path / "library"
    (folder / "sub").mkdir(parents=True)
    (folder / "orchard.md").write_text(MARKDOWN)
    (folder / "sub" / "manual.pdf").write_bytes(make_pdf([["Coolant pressure stays below 41 bar."]]))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "picture.png").write_bytes(b"\x89PNG")  # not a document type: not picked up
    out, err = io.StringIO(), io.StringIO()
    realtime = logging.getLogger("a4ps_site.realtime")
    before = realtime.level
    call_command("docs_ingest", str(folder), stdout=out, stderr=err)
    assert realtime.level == before  # quiet while it ran, as before afterwards
    assert "2 indexed, 0 already there, 1 refused or failed." in out.getvalue()
    assert "empty.txt: the file is empty" in err.getvalue()
    assert Document.objects.filter(status="indexed").count() == 2
    with pytest.raises(CommandError, match="no such file or folder"):
        call_command("docs_ingest", str(folder / "nope"), stdout=io.StringIO())


def test_upload_through_the_page_is_stored_under_the_person(auth_client, user, scripted_model):
    auth_client.post(reverse("document_upload"), {"file": SimpleUploadedFile("orchard.md", MARKDOWN.encode())})
    document = Document.objects.get()
    assert document.uploaded_by == user
    event = Event.objects.get(kind="document.indexed")
    assert "Orchard Cooperative Handbook" in json.dumps(event.payload)


def test_a_run_cites_the_document_chunk_it_used(auth_client, user, scripted_model, personas_seeded, config_dir):
    from personas import runs

    small_chunks(config_dir, 120)
    document = add("orchard.md", MARKDOWN.encode())
    tools = next(c for c in chunks_of(document) if "5512" in c.text)
    scripted_model.rules.update({
        "route": {"research": True, "reason": "The handbook may say."},
        "research": "The handbook says the shed code is 5512 [1].",
        "answer": "The code of shed B is 5512 [1].",
    })
    run = runs.run_submit(task="What is the code of the shed where the ladders are kept?", user=user)
    run.refresh_from_db()
    research = run.steps.get(kind="research")
    assert research.data["memories"][0]["id"] == tools.id  # the right chunk came first
    answer = run.answer_step()
    assert answer.data["cited"] == [1] and not answer.data["uncited"]
    source = answer.data["sources"][0]
    chunk_url = reverse("document_detail", args=[document.pk]) + f"?chunk={tools.id}#chunk-{tools.id}"
    assert source["kind"] == "document" and source["url"] == chunk_url
    # The label names the document and the section, without the title repeated as the top heading.
    assert source["label"] == "Orchard Cooperative Handbook, Harvest › Tools"
    assert tools.text.startswith("[Orchard Cooperative Handbook › Harvest › Tools]\n")
    page = auth_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert f'href="{chunk_url.replace("&", "&amp;")}" data-source="1">[1]</a>' in page
    assert 'id="run-sources"' in page and "shed code is 5512" in page and 'id="uncited-flag"' not in page
    # The cited chunk opens highlighted in the document's chunk view.
    opened = auth_client.get(chunk_url).content.decode()
    assert f'class="chunk cited" id="chunk-{tools.id}"' in opened
    api = auth_client.get(reverse("api_run", args=[run.pk])).json()
    assert api["sources"][0]["url"] == chunk_url and api["citations"]["cited"] == [1]


def test_an_answer_that_cites_nothing_is_flagged_or_attributed(auth_client, user, scripted_model, personas_seeded,
                                                               config_dir):
    from personas import runs

    small_chunks(config_dir, 120)
    add("orchard.md", MARKDOWN.encode())
    scripted_model.rules.update({"route": {"research": True, "reason": "r"},
                                 "research": "The handbook mentions the shed [1].",
                                 "answer": "Ask the cooperative's office for the code."})
    task = "What is the code of the shed where the ladders are kept?"
    # A source under graph.research_relevance is not close enough to quote its line: the answer is flagged.
    set_documents(config_dir, research_relevance=0.99)
    run = runs.run_submit(task=task, user=user)
    run.refresh_from_db()
    answer = run.answer_step()
    assert run.final_answer == "Ask the cooperative's office for the code."
    assert answer.data["uncited"] and answer.data["sources"]
    page = auth_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'id="uncited-flag"' in page and "cites none of the" in page
    assert auth_client.get(reverse("api_run", args=[run.pk])).json()["citations"]["uncited"] is True
    set_documents(config_dir, research_relevance=0.5)

    scripted_model.rules["answer"] = "The ladder shed opens with code 5512."
    run = runs.run_submit(task=task, user=user)
    run.refresh_from_db()
    answer = run.answer_step()
    # The first run is in memory now too; the citation goes to the source that holds the code.
    n = next(s["n"] for s in answer.data["sources"] if "5512" in s["snippet"])
    assert answer.data["attributed"] == [n] and not answer.data["uncited"], (run.final_answer, answer.data["sources"])
    assert run.final_answer == f"The ladder shed opens with code 5512. [{n}]"
    page = auth_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'id="attributed-note"' in page and f'data-source="{n}">[{n}]</a>' in page


def test_the_close_sources_line_is_quoted_and_cited_under_an_answer_that_ignores_it(scripted_model,
                                                                                    personas_seeded, config_dir):
    from personas import runs

    small_chunks(config_dir, 120)
    add("orchard.md", MARKDOWN.encode())
    scripted_model.rules.update({"route": {"research": True, "reason": "r"},
                                 "research": "The handbook mentions the shed [1].",
                                 "answer": "Ask the cooperative's office for the code."})
    run = runs.run_submit(task="What is the code of the shed where the ladders are kept?")
    run.refresh_from_db()
    answer = run.answer_step()
    assert run.final_answer.startswith("Ask the cooperative's office for the code.\n\nWhat the source says [1]: ")
    quoted = run.final_answer.split("What the source says [1]: ", 1)[1]
    # The line is a clause ("Ladders are stored in shed B;"): its whole sentence is quoted, with the code.
    assert quoted == '"Ladders are stored in shed B; the shed code is 5512."'
    assert answer.data["cited"] == [1] and not answer.data["uncited"]
    assert answer.data["sources"][0]["kind"] == "document"
    assert "with the line quoted under it" in " ".join(answer.data["notes"])


def test_a_bad_setting_is_refused_with_its_key_and_nothing_is_stored(scripted_model, config_dir, isolated_var):
    (config_dir / "settings.toml").write_text((config_dir / "settings.toml").read_text().replace(
        "chunk_chars = 900", 'chunk_chars = "big"'))
    with pytest.raises(DocumentError, match=r"documents.chunk_chars must be a positive number, not 'big'"):
        services.document_add(name="orchard.md", data=MARKDOWN.encode())
    assert Document.objects.count() == 0 and stored_files(isolated_var) == []


def test_a_malformed_docx_is_refused_not_a_server_error(auth_client, scripted_model):
    import zipfile

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types><not-closed>")
        archive.writestr("word/document.xml", "<w:document/>")
    response = auth_client.post(reverse("document_upload"), {"file": SimpleUploadedFile("odd.docx", data.getvalue())})
    assert response.status_code == 400 and "the DOCX could not be read" in response.json()["error"]


def test_html_text_in_plain_divs_is_kept_and_markdown_code_stays_whole():
    parsed = parsing.parse("p.html", b"<h1>Ferry</h1><div>The first ferry leaves at 06:40</div>"
                                     b"<div><p>Contact us.</p></div>")
    assert [b.text for b in parsed.blocks] == ["Ferry", "The first ferry leaves at 06:40", "Contact us."]
    code = "# Notes\n\n```python\ndef f():\n    return 1\n\nprint(f())\n```\n\nAfter the code.\n"
    blocks = [b.text for b in parsing.parse("c.md", code.encode()).blocks]
    assert "```python\ndef f():\n    return 1\n\nprint(f())\n```" in blocks


def test_a_heading_left_alone_at_a_chunk_edge_joins_the_next_chunk():
    text = ("# Handbook\n\n## Sheds\n\n" + "The shed holds ladders and rakes. " * 40 +
            "\n\n## Water\n\nTaps open at six.\n")
    _, chunks = parsing.split(parsing.parse("h.md", text.encode()), chunk_chars=300, overlap_chars=0)
    assert not any(re.fullmatch(r"(#{1,6} [^\n]*\s*)+", c.text) for c in chunks)
    assert chunks[0].text.startswith("# Handbook\n\n## Sheds\n\nThe shed")


def test_deleting_with_a_stale_row_still_removes_what_an_ingest_just_wrote(scripted_model):
    document, _ = services.document_add(name="orchard.md", data=MARKDOWN.encode(), enqueue=False)
    stale = Document.objects.get(pk=document.pk)  # the page loaded this before indexing finished
    services.document_ingest(document_id=document.pk)
    assert memory_store().count() == 1
    services.document_delete(document=stale)
    assert memory_store().count() == 0 and memory_store().count(level=3) == 0


def test_documents_a_stop_left_half_indexed_are_cleaned_and_queued_again(scripted_model):
    import uuid as uuid_module

    document, _ = services.document_add(name="orchard.md", data=MARKDOWN.encode(), enqueue=False)
    # What the stopped ingest had written under its pending id (here whole, which is the worst case).
    orphan = str(uuid_module.uuid4())
    memory_store().add_memories([{"id": orphan, "summary": "half", "chunks": [{"text": "half-written chunk"}]}])
    Document.objects.filter(pk=document.pk).update(status="ingesting", pending_memory_id=orphan)
    assert services.documents_resume() == 1  # queues it (Huey runs it at once in tests)
    document.refresh_from_db()
    assert document.status == "indexed" and document.pending_memory_id == ""
    assert memory_store().count() == 1 and "half-written chunk" not in " ".join(c.text for c in chunks_of(document))


def test_a_document_memory_is_deleted_from_the_documents_page_not_the_memory_page(auth_client, scripted_model):
    document = add("orchard.md", MARKDOWN.encode())
    page = auth_client.post(reverse("memory_delete", args=[document.memory_id]), follow=True).content.decode()
    assert "delete it on the Documents page" in page and memory_store().count() == 1
