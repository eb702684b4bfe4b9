"""Tells a real contribution from a hollow one: echoes of the prompt, copies of the task, near-duplicate
candidates, tool requests that are no function, critics whose number contradicts their words.

Pure text functions (no model, no Django), so every rule is testable on its own."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from personas.inference.embeddings import cosine_similarity

_WORD = re.compile(r"[a-z0-9]+")
ECHO_SHARE = 0.6  # this share of a reply's word 4-grams found in its prompt: an echo, not a contribution
TASK_COPY_SHARE = 0.6  # a candidate or tool spec that is mostly the task's own words restates it
NEAR_DUPLICATE = 0.92  # embedding cosine above which two candidate lines are the same line
WORDS_DUPLICATE = 0.8  # word 3-gram overlap above which two candidate lines are the same line


def words(text: str) -> list[str]:
    return _WORD.findall((text or "").lower())


def _grams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def overlap(reply: str, source: str, n: int = 4) -> float:
    """Share (0..1) of the reply's word n-grams that also occur in the source. A reply shorter than n
    words counts as fully overlapping when its words appear in the source in order."""
    r, s = words(reply), words(source)
    if not r:
        return 0.0
    if len(r) < n:
        return 1.0 if f" {' '.join(r)} " in f" {' '.join(s)} " else 0.0
    grams = _grams(r, n)
    return len(grams & _grams(s, n)) / len(grams)


# What the graph itself writes in place of a contribution; a reply made of it is no contribution.
PLACEHOLDERS = ("memory holds nothing relevant", "gave no thesis", "gave no real answer",
                "asks for a tool before giving a thesis", "the tool forge is building", "the forge could not build")


def hollow_reason(text: str, *, prompt: str, task: str = "") -> str:
    """Why a free-text contribution is not one ("" when it is real): empty, an echo of its own prompt
    or instructions, the task copied back, or one of the graph's own placeholder lines."""
    if not words(text):
        return "it was empty"
    lowered = " ".join(words(text))
    for placeholder in PLACEHOLDERS:
        phrase = " ".join(words(placeholder))
        if phrase in lowered and len(words(text)) <= len(words(placeholder)) + 8:
            return "it repeated a placeholder of the graph"
    if task and overlap(text, task) >= TASK_COPY_SHARE and len(words(text)) <= len(words(task)) + 3:
        return "it copied the task back"
    if overlap(text, prompt) >= ECHO_SHARE:
        return "it repeated its own instructions"
    return ""


def cut_prompt_blocks(text: str, headers: Sequence[str]) -> tuple[str, str]:
    """A reply without the copy of its prompt's scaffolding a small model appends after its answer ("The
    autumn term starts on 2027-09-06." then "Where the sources speak to the task:" and the source again):
    cut at the first line that is one of the prompts' block headers, when there is an answer before it.
    (text, the header cut at or "")."""
    lines = (text or "").splitlines()
    wanted = {h.strip().lower() for h in headers}
    for i, line in enumerate(lines):
        if i and line.strip(" \t*_#>").strip().lower() in wanted and words("\n".join(lines[:i])):
            return "\n".join(lines[:i]).rstrip(), line.strip(" \t*_#>").strip()
    return text, ""


_SPEAKER = re.compile(r"^\s*\**(ALFRED|BRICK|ROBIN|BABS)\**\s*:\s*\**\s*")


def strip_speaker(text: str) -> tuple[str, str]:
    """A reply without the "BRICK:" a small model puts before a turn it copies from the team's discussion
    (which its prompt lists as "NAME: words"). (text, the name stripped or "")."""
    found = _SPEAKER.match(text or "")
    if not found or not words(text[found.end():]):
        return text, ""
    return text[found.end():].lstrip(), found.group(1)


# "The final answer for the person who asked is:", "**Final Answer:**", "Here is our final answer:" — the
# prompt's own words put before the answer.
_PREAMBLE = re.compile(r"^[ \t#*_]*(?:here is |here's |so,? )?(?:the |my |our )?final answer"
                       r"(?:[ \t]+(?:for|to)[ \t]+[^\n:]{1,40}?)?(?:[ \t]+is)?[ \t]*:[ \t*_]*\n*", re.I)


def strip_preamble(text: str) -> tuple[str, str]:
    """A reply without the "The final answer for the person who asked is:" a small model puts before it,
    when an answer follows. (text, the preamble dropped or "")."""
    found = _PREAMBLE.match(text or "")
    if not found or not words(text[found.end():]):
        return text, ""
    return text[found.end():].lstrip(), found.group(0).strip(" \t\n*_#")


# A slot the request templates of the prompts and the codex leave for the model to fill: a few lower-case
# words in angle brackets, as the function's name, its inputs or its result are written there.
_SLOT = re.compile(r"<[a-z][a-z ]*[a-z]>")
_TEMPLATE_WORDS = {"returns", "e", "g", "eg", "for", "example"}  # the templates' words between their slots


def template_copy(spec: str) -> bool:
    """Whether a tool request is its prompt's template copied back: its slots left unfilled and nothing
    of a function of its own around them (a request with a slot or two left but a named function of its
    own is a request, and goes to the spec gate)."""
    if not _SLOT.search(spec or ""):
        return False
    return set(words(_SLOT.sub(" ", spec))) <= _TEMPLATE_WORDS


_ASSENT_ONLY = re.compile(
    r"^\W*(yes\W*)?((i|we)\s+)?((fully|completely|totally|entirely)\s+)?(agree|agreed|concur)"
    r"(\s+(with\s+)?(brick|robin|babs|alfred|the\s+\w+|you|this|that|both|them|all|everyone)"
    r"(\s+and\s+\w+)?)?\W*$", re.I)


def assent_only(text: str) -> str:
    """Why an answer is no answer because it only agrees ("I agree.", "Agreed with BRICK."), or "".
    ROBIN may rightly agree; a thesis or a final answer has to say something."""
    return "it only agreed, without answering" if _ASSENT_ONLY.match((text or "").strip()) else ""


def distinct_lines(lines: Sequence[str], *, task: str, instructions: str,
                   embed: Callable[[list[str]], Any] | None = None) -> tuple[list[str], list[str]]:
    """The real, mutually distinct candidate lines, and a note for each one dropped (copy of the task,
    echo of the instructions, near-duplicate of an earlier line)."""
    kept: list[str] = []
    dropped: list[str] = []
    for line in (str(x).strip() for x in lines):
        if not words(line):
            continue
        if overlap(line, task) >= TASK_COPY_SHARE:
            dropped.append(f"“{_short(line)}” copies the task")
        elif overlap(line, instructions) >= ECHO_SHARE:
            dropped.append(f"“{_short(line)}” repeats the instructions")
        elif any(overlap(line, other, 3) >= WORDS_DUPLICATE or overlap(other, line, 3) >= WORDS_DUPLICATE
                 for other in kept):
            dropped.append(f"“{_short(line)}” repeats an earlier line")
        else:
            kept.append(line)
    if embed and len(kept) > 1:
        vectors = list(embed(kept))
        unique: list[int] = []
        for i in range(len(kept)):
            if any(cosine_similarity(vectors[i], vectors[j]) >= NEAR_DUPLICATE for j in unique):
                dropped.append(f"“{_short(kept[i])}” says what an earlier line says")
            else:
                unique.append(i)
        kept = [kept[i] for i in unique]
    return kept, dropped


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_FORGE_MESSAGE = re.compile(r"forge could not|gave up after|not buildable|tool forge|tool_required|"
                            r"could not build|was not registered", re.I)
_OUTSIDE = re.compile(r"\b(internet|web ?site|web page|url|http|download|online|database|api|e-?mail|"
                      r"send|post to|file system|read the file|search the web|look up)\b", re.I)
_OUTPUT = re.compile(r"\b(returns?|returning|outputs?|computes?|calculates?|counts?|converts?|gives|yields?|"
                     r"produces?|checks?|finds?|sums?|->)|->|=>", re.I)
_INPUT = re.compile(r"\(|\b(takes?|taking|given|input|inputs|arguments?|parameters?|accepts?|receives?)\b|"
                    r"\b(of|between|from|for|in|into) (a|an|two|three|the|each|given|\d)", re.I)
_EXAMPLE = re.compile(r"\b(e\.g\.|for example|example|for instance|such as)\b|\w\([^()]*\d[^()]*\)|"
                      r"\b\w+\s*\([^()]*\)\s*(==|->|=>|=|returns|gives|is)\s*\S|\d\s*(->|=>|==)", re.I)


def tool_spec_problem(spec: str, task: str) -> str:
    """Why a tool request cannot go to the forge ("" when it can): a tool is a pure, testable function
    with inputs, an output and an example — not the task restated, nor the forge's own message."""
    spec = (spec or "").strip()
    if len(words(spec)) < 4:
        return "it is too short to describe a function"
    if _FORGE_MESSAGE.search(spec):
        return "it repeats a message of the forge instead of describing a function"
    if task and (overlap(spec, task) >= TASK_COPY_SHARE or overlap(task, spec) >= TASK_COPY_SHARE):
        return "it restates the task instead of describing one function that helps with it"
    if _OUTSIDE.search(spec):
        return "a tool is a pure function: it cannot reach the network, files or other services"
    if "::" in spec or re.search(r"\w\.\w+\(", spec):
        return "it names a method of some class; a tool is one plain Python function"
    call = _CALL.search(spec)
    if call and not re.search(rf"\b{re.escape(call.group(1))}\s*\(", spec[call.end():]):
        return f"it does not give an example call of {call.group(1)} with its result"
    missing = [name for name, rule in (("its inputs", _INPUT), ("what it returns", _OUTPUT),
                                       ("an example call with its result", _EXAMPLE)) if not rule.search(spec)]
    if missing:
        return "it does not say " + " and ".join(missing)
    return ""


_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")

_AGREE = re.compile(r"\b(agree|agrees|agreed|agreement|consensus|aligned|same (answer|conclusion|view)|"
                    r"both (say|state|conclude|give|reach))\b", re.I)
_DISAGREE = re.compile(r"\b(disagree|disagrees|disagreement|not agree|don't agree|do not agree|oppos|contradict|"
                       r"differ|conflict)", re.I)


# "without any errors or contradictions", "no conflict between them": disagreement denied is agreement.
_DENIED = re.compile(r"\b(no|without|not any|free of|never)\s+(?:(?!but\b|yet\b|though\b)\w+\s+){0,3}?"
                     r"(disagree|contradict|conflict|differ|oppos)\w*", re.I)


def critic_says_agree(reason: str, consensus: Any, antithesis: str) -> bool:
    """Whether the critic (its flag or its own words) or ROBIN's answer says the two agree."""
    denied = _DENIED.search(reason or "")
    if _DISAGREE.search(_DENIED.sub(" ", reason or "")):
        return False
    return bool(consensus is True or denied or _AGREE.search(reason or "") or
                (antithesis or "").strip().lower().startswith("i agree"))
