"""Citations: numbers read from text, attribution by shared facts, and links that cannot be abused."""
from __future__ import annotations

from personas.graph import citations
from personas.templatetags.markdown import cite, safe_href

SOURCES = [{"text": "The volunteer coordinator is Marguerite Okafor; her extension is 4471.",
            "source": {"kind": "document", "label": "Atlas handbook, Contacts", "url": "/memory/documents/3/?chunk=a"}},
           {"text": "Locker keys are kept in the blue cabinet behind reception.",
            "source": {"kind": "web", "label": "Lockers", "url": "https://example.org/lockers"}}]


def test_cited_numbers_in_order_of_mention():
    assert citations.cited_numbers("See [2] and [1, 3]; again [2].") == [2, 1, 3]
    assert citations.cited_numbers("No citation, a list [a] or [].") == []


def test_check_keeps_real_citations_and_ignores_out_of_range_ones():
    checked = citations.check("Call extension 4471 [1] or see [7].", "Who coordinates?", SOURCES)
    assert checked["cited"] == [1] and not checked["attributed"] and not checked["uncited"]
    assert checked["answer"] == "Call extension 4471 [1] or see [7]."
    assert [s["n"] for s in checked["sources"]] == [1, 2] and checked["sources"][1]["kind"] == "web"


def test_an_uncited_answer_gets_the_source_it_repeats_and_only_that_one():
    checked = citations.check("Ask Marguerite Okafor on extension 4471.", "Who coordinates the volunteers?", SOURCES)
    assert checked["attributed"] == [1] and checked["answer"].endswith("4471. [1]")
    # Words the task already holds prove nothing.
    checked = citations.check("The volunteers have a coordinator.", "Who coordinates the volunteers?", SOURCES)
    assert checked["uncited"] and checked["attributed"] == []
    assert citations.check("An answer.", "A task?", [])["uncited"] is False  # nothing was retrieved


def test_citation_links_point_at_their_source_and_never_at_a_script():
    sources = [{"n": 1, "url": "/memory/documents/3/?chunk=a&x=1"}, {"n": 2, "url": "javascript:alert(1)"}]
    html = str(cite("<p>Fact [1]. Other [2]. Unknown [3].</p>", sources))
    assert '<a href="/memory/documents/3/?chunk=a&amp;x=1" data-source="1">[1]</a>' in html
    assert '<a href="#source-2" data-source="2">[2]</a>' in html and "javascript" not in html
    assert "Unknown [3]." in html
    assert safe_href("//evil.example/x") == "" and safe_href("https://ok.example/") == "https://ok.example/"


def test_citations_in_code_and_link_titles_are_left_alone():
    from personas.templatetags.markdown import markdown

    html = str(cite(markdown('Fact [1]. `xs[1]` and [x](http://a "[1] t")\n\n```\nys = [1, 2]\n```\n'),
                    [{"n": 1, "url": "/d/1/"}]))
    assert html.count('data-source="1"') == 1
    assert "<code>xs[1]</code>" in html and 'title="[1] t"' in html and "ys = [1, 2]" in html
    assert citations.cited_numbers("See `xs[1]` and\n```\nys = [2]\n```\nbut [3].") == [3]


def test_a_numbered_list_is_not_proof_that_a_source_was_used():
    sources = [{"text": "Plot 1 and run 2 are noted here."}]
    assert citations.attribute("1. Open the gate. 2. Close it.", "How do I use the gate?", sources) == []
    checked = citations.check("Use this:\n```\ncall(4471)\n```\nThe extension is 4471.", "Which extension?",
                              [{"text": "Her extension is 4471."}])
    assert checked["attributed"] == [1] and checked["answer"].endswith("4471. [1]")
    ends_in_code = citations.check("The extension is 4471:\n```\ncall(4471)\n```", "Which extension?",
                                   [{"text": "Her extension is 4471."}])["answer"]
    assert ends_in_code.endswith("```\n\n[1]")
