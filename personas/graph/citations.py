"""Numbered sources and the citations `[n]` that point at them.

BABS numbers what it retrieved ([1] is the first memory it used); its report and ALFRED's answer cite by
those numbers. An answer that cites nothing though the run retrieved facts is checked against the
sources: where it plainly uses one (a number, a name or a rare word of the source that the task does not
contain), the citation is added and marked as added; otherwise the answer is flagged as uncited.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from personas.graph import quality

CITATION = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_WORD = re.compile(r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'’-]{3,}|\d+(?:[.,:]\d+)*")
# Words too common to show that an answer used a source.
_COMMON = frozenset("""
about above after again against also always among another answer any are around because been before being
below between both but came can cannot could did does doing done down during each either else even every
first from further give given had has have having here how however into its itself just keep kept know
last least less like made make many more most much must near need never next none not now often once
only other others our out over own part per perhaps please quite rather really said same says should
since some still such than that the their them then there these they thing things this those though
through thus too toward under until upon used using very want was way well were what when where whether
which while who whom whose why will with within without would year years yes yet you your
""".split())


_CODE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]*`", re.DOTALL)


def cited_numbers(text: str) -> list[int]:
    """The source numbers a text cites, in order of first mention (code is not prose: `xs[1]` cites
    nothing)."""
    seen: list[int] = []
    for match in CITATION.finditer(_CODE.sub(" ", text or "")):
        for part in re.split(r"[,;]", match.group(1)):
            n = int(part.strip())
            if n not in seen:
                seen.append(n)
    return seen


def source_entries(memories: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the run page and the API list: one entry per memory BABS used, numbered from 1."""
    entries = []
    for n, memory in enumerate(memories, start=1):
        source = dict(memory.get("source") or {})
        text = " ".join(str(memory.get("text", "")).split())
        entries.append({
            "n": n, "kind": source.get("kind", "memory"), "label": source.get("label") or f"memory {n}",
            "url": source.get("url", ""), "snippet": text[:280] + ("…" if len(text) > 280 else ""),
            **{k: source[k] for k in ("document", "chunk", "page", "heading", "run", "fetched_at") if k in source},
        })
    return entries


def _distinctive(text: str) -> set[str]:
    """Words that can show an answer used a source: rarer words of five letters or more, and numbers
    of two digits or more or with a decimal or time separator (a list's "1." proves nothing)."""
    words = {w.lower().strip("'’-") for w in _WORD.findall(_CODE.sub(" ", text or ""))}
    return {w for w in words if w not in _COMMON and
            ((w[0].isdigit() and (len(w) >= 2 or any(c in w for c in ".,:"))) or (w[0].isalpha() and len(w) >= 5))}


def uses(answer: str, line: str, task: str) -> bool | None:
    """Whether an answer repeats something of a source's line that the task does not hold: one of its
    numbers (two digits or more) when it has any — the fact asked for is most often the number, and the
    words around it ("the combination changes every January") can be repeated without it — else one of
    its rarer words. None when the line holds nothing the task does not."""
    own = _distinctive(line) - _distinctive(task)
    numbers = {w for w in own if w[0].isdigit()}
    return bool((numbers or own) & _distinctive(answer)) if own else None


def attribute(answer: str, task: str, memories: list[Mapping[str, Any]]) -> list[int]:
    """Sources whose distinctive words (not in the task) the answer repeats: numbers from 1."""
    said = _distinctive(answer) - _distinctive(task)
    found = []
    for n, memory in enumerate(memories, start=1):
        shared = said & _distinctive(str(memory.get("text", "")))
        # A number, or two rarer words, shared with the source and absent from the task.
        if any(w[0].isdigit() for w in shared) or len(shared) >= 2:
            found.append(n)
    return found


def check(answer: str, task: str, memories: list[Mapping[str, Any]]) -> dict[str, Any]:
    """How an answer cites the run's sources: {"sources", "cited", "attributed", "uncited", "answer"} where
    "answer" carries the added citations (unchanged when the model cited, or when nothing was retrieved)."""
    sources = source_entries(memories)
    if not sources:
        return {"sources": [], "cited": [], "attributed": [], "uncited": False, "answer": answer}
    cited = [n for n in cited_numbers(answer) if 1 <= n <= len(sources)]
    attributed: list[int] = []
    if not cited:
        attributed = attribute(answer, task, memories)
        if attributed:
            marks = "".join(f"[{n}]" for n in attributed)
            # After a code block the marks go on a line of their own (inside the fence they would be code).
            ends_in_code = answer.rstrip().endswith(("```", "~~~"))
            answer = answer.rstrip() + ("\n\n" if ends_in_code else " ") + marks
    return {"sources": sources, "cited": cited, "attributed": attributed, "uncited": not cited and not attributed,
            "answer": answer}


# Words of a question that say how to answer, not what about: they pick no line of a source.
_ASKING = frozenset("according answer exactly give how just many much number what which who whom".split())
_SENTENCE = re.compile(r"(?<=[.!?;])\s+(?=\S)")
_TERM = re.compile(r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'’-]{2,}|\d+(?:[.,:]\d+)*")
# Lines a source carries about itself: its label, its headings, a summary's own header lines.
_FRAME = re.compile(r"^\s*(?:\[[^\]]*\]\s*$|#|(?:Document|File|Sections):)")


STEM_CHARS = 6  # words agreeing on this many leading letters count as one ("conducts", "conductor")


def _stem(word: str) -> str:
    word = word.lower().strip("'’-")
    if word[:1].isdigit():
        return word
    for suffix in ("ies", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    return word[:STEM_CHARS]


def _terms(text: str) -> set[str]:
    return {_stem(w) for w in _TERM.findall(text) if w.lower() not in _COMMON and w.lower() not in _ASKING}


def source_lines(text: str) -> list[str]:
    """A source's sentences, without its label, headings and summary header lines."""
    lines = [line for line in str(text).splitlines() if line.strip() and not _FRAME.match(line)]
    return [s.strip() for line in lines for s in _SENTENCE.split(line) if s.strip()]


_FULL_STOP = re.compile(r"(?<=[.!?])\s+(?=\S)")


def whole_sentence(line: str, text: str) -> str:
    """The full sentence of a source that holds one of its lines: a line ends at a semicolon too, and
    "Ladders are stored in shed B;" alone leaves out "the shed code is 5512." (the line itself when
    it is not found)."""
    for row in str(text).splitlines():
        for sentence in _FULL_STOP.split(row):
            if line in sentence:
                return sentence.strip()
    return line


_ARTICLES = frozenset({"a", "an", "the"})


def _pairs(text: str) -> set[tuple[str, str]]:
    """Neighbouring words (an article and its noun say nothing about which line answers)."""
    words = [_stem(w) for w in quality.words(text)]
    return {(a, b) for a, b in zip(words, words[1:]) if a not in _ARTICLES and b not in _ARTICLES}


def key_lines(task: str, memory: Mapping[str, Any]) -> list[tuple[tuple[int, int, int, float], str]]:
    """The sentences of a source that share words with the task, best first, each with its score: how many
    of the task's words it shares that do not name the source; then how many of the task's word pairs it
    repeats ("no water supply" in a line about who has none, not in one about where water is handed out);
    then how many words naming the source it shares (a title names the source more than it picks a line);
    then the shared words' rarity in this source."""
    source = memory.get("source") or {}
    title = " ".join(str(t) for t in (source.get("label"), source.get("name"),
                                          (memory.get("metadata") or {}).get("title")) if t)
    named = _terms(title.replace("-", " ").replace("_", " "))
    asked, asked_pairs = _terms(task), _pairs(task)
    sentences = source_lines(str(memory.get("text", "")))
    shared = [_terms(s) & asked for s in sentences]
    spread = {t: sum(t in found for found in shared) for t in asked}
    scored = [((len(found - named), len(_pairs(s) & asked_pairs), len(found & named),
                round(sum(1 / spread[t] for t in found - named), 6)), s)
              for s, found in zip(sentences, shared) if found - named]
    return sorted(scored, key=lambda pair: pair[0], reverse=True)
