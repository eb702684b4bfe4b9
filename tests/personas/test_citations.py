"""Citations: numbers read from text, attribution by shared facts, and links that cannot be abused."""
from __future__ import annotations

import pytest

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


GARDEN = {"text": "[Larkspur Garden — Rules]\n# Larkspur Garden — Rules\n\n## Plots\n\nThe garden has 42 plots. "
                  "The plot fee is 18 euros.\n\n## Tools\n\nShared tools live in the green shed. The shed "
                  "combination is 3917, and it changes every January.",
          "source": {"kind": "document", "label": "Larkspur Garden — Rules"}}


def test_the_key_line_of_a_source_is_the_sentence_that_answers_not_its_title_or_first_fact():
    (score, line), *rest = citations.key_lines("What is the Larkspur Garden's shed combination?", GARDEN)
    assert line == "The shed combination is 3917, and it changes every January."
    assert [text for _, text in rest] == ["Shared tools live in the green shed."] and score > rest[0][0]
    # The label, headings and a summary's header lines are no sentences of the source.
    assert citations.source_lines("[Doc]\n# Doc\nDocument: Doc\nSections: A; B\nOne. Two;\nthree") == [
        "One.", "Two;", "three"]
    # Words that only name the source (its title, a file name's parts) pick no line.
    loans = {"text": "Northgate Library: loan rules\nA loan can be renewed up to 4 times.",
             "source": {"kind": "document", "label": "northgate-library-loans"}}
    assert citations.key_lines("How many times can a Northgate Library loan be renewed?", loans)[0][1] == (
        "A loan can be renewed up to 4 times.")
    assert citations.key_lines("What does the Larkspur Garden rule say?", GARDEN) == []


def test_the_prompts_quote_the_line_that_speaks_to_the_task_and_only_when_one_does():
    from personas.graph import prompts

    other = {"text": "Ferry fares: an adult single is 6.80 euros.", "source": {"label": "Ferry fares"}}
    state = {"task": "What is the Larkspur Garden's shed combination?", "memories": [GARDEN, other],
             "babs_report": "The rules [1].", "dialogue": [{"persona": "BRICK", "content": "It is the year."}]}
    block = prompts.key_lines_block(state)  # only the lines sharing the most words: not the one naming the shed
    assert block.splitlines() == ["Where the sources speak to the task:",
                                  '[1] "The shed combination is 3917, and it changes every January."']
    # The synthesis quotes it, and the task, again after the discussion, next to what it asks.
    ask = prompts.synthesis(None, state)[-1]["content"]
    after = ask[ask.index("The team's discussion"):]
    assert ask.count(block) == 2 and block in after and f"The task: {state['task']}" in after
    for retry in (prompts.synthesis_retry(None, state, ""), prompts.thesis_retry(None, state),
                  prompts.first_answer(state)):
        assert block in retry[-1]["content"]
    assert prompts.key_lines_block({**state, "task": "What does the Larkspur Garden rule say?"}) == ""
    assert prompts.key_lines_block({"task": "Anything?", "memories": []}) == ""


# Questions with the document that answers them (a label and its text), and the words of the line that
# holds the answer; None where no line shares a word with the question: nothing is quoted then.
KEY_LINE_CASES = [
    ("Who conducts the Oakfield Choir?", "Oakfield Choir",
     "Rehearsals are on Tuesday evenings in St Anne's hall.\nThe conductor is Ingrid Solheim.\n"
     "The yearly subscription is 60 euros; students pay half.", "The conductor is Ingrid Solheim"),
    ("How much is an adult ticket at the Fenwick Museum on an ordinary day?", "Fenwick Museum — Visiting",
     "# Fenwick Museum — Visiting\n\nThe museum opens at 10:00 and shuts at 17:00.\nEntry is free on the first "
     "Sunday of the month; otherwise adults pay 9 euros.", "adults pay 9 euros"),
    ("Which streets will have no water supply during the Greyfield maintenance?", "Greyfield Water Board",
     "Elm Road and Hazel Way will have no water supply during the work.\nOak Avenue keeps its supply.\n"
     "Bottled water is handed out on Church Street.", "Elm Road and Hazel Way"),
    ("How fast may motor boats go on Northbank Lake?", "Northbank Lake — Rules",
     "Swimming is not permitted anywhere on the lake.\nThe speed limit for motor boats is 8 knots.", "8 knots"),
    ("On which day is the Cedar Dental Clinic shut?", "Cedar Dental Clinic",
     "A check-up costs 45 euros.\nThe clinic is closed on Wednesdays.", None),
]


@pytest.mark.parametrize(("task", "label", "text", "holds"), KEY_LINE_CASES, ids=[c[1] for c in KEY_LINE_CASES])
def test_the_quoted_line_is_the_one_that_answers_or_none(task, label, text, holds):
    from personas.graph import prompts

    museum = {"text": "The gallery shuts at 17:00 and adults pay 12 euros.", "source": {"label": "Another place"}}
    block = prompts.key_lines_block({"task": task, "memories": [{"text": text, "source": {"label": label}}, museum]})
    if holds is None:
        assert block == ""  # nothing shares a word: silence, not another source's "shuts at 17:00"
    else:
        assert holds in block.splitlines()[1] and "Another place" not in block and "12 euros" not in block


def test_a_quoted_clause_is_widened_to_its_whole_sentence():
    text = "# Sheds\nTools are in shed A. Ladders are stored in shed B; the shed code is 5512. Keys: office."
    assert citations.whole_sentence("Ladders are stored in shed B;", text) == \
        "Ladders are stored in shed B; the shed code is 5512."
    assert citations.whole_sentence("Keys: office.", text) == "Keys: office."
    assert citations.whole_sentence("A line the text does not hold.", text) == "A line the text does not hold."
