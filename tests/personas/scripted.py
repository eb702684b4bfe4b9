"""A scripted stand-in for ModelManager: deterministic replies chosen by persona and request shape."""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 10
    completion_tokens: int = 5
    load_ms: float = 0.0
    total_ms: float = 1.0
    tokens_per_s: float = 100.0
    model: str = "scripted"
    backend: str = "scripted"
    persona: str | None = None
    parsed: Any = None


FORGE_BUGGY = """```python
def add_two_integers(a: int, b: int) -> int:
    \"\"\"Return the sum of two integers.\"\"\"
    return a - b


def test_add_two_integers():
    assert add_two_integers(2, 3) == 5
    assert add_two_integers(-1, 1) == 0
```"""
FORGE_FIXED = FORGE_BUGGY.replace("return a - b", "return a + b")


def forge_reply(count: int, messages: list[dict]) -> str:
    """The default forge answer: a bug on the first try, fixed once the sandbox's failure comes back."""
    return FORGE_FIXED if "Fix the code" in messages[-1]["content"] else FORGE_BUGGY


forge_reply.wants_messages = True  # type: ignore[attr-defined]


def request_kind(persona: str, json_schema: dict | None, messages: list[dict] | None = None) -> str:
    from forge.toolforge import FORGE_SYSTEM_MARK, FORGE_TESTS_MARK

    if messages and messages[0].get("content", "").startswith(FORGE_SYSTEM_MARK):
        return "forge"
    if messages and messages[0].get("content", "").startswith(FORGE_TESTS_MARK):
        return "forge_tests"
    if persona == "ALFRED" and messages and not json_schema and messages[0].get("role") == "user":
        return "first_answer"  # asked as a person would ask the model: no system prompt
    props = (json_schema or {}).get("properties", {})
    if "research" in props:
        return "route"
    if "thoughts" in props:
        return "thoughts"
    if "scores" in props:
        return "evaluation"
    if "dissonance" in props:
        return "critic"
    if "principle" in props:
        return "amendment"
    return {"BRICK": "thesis", "ROBIN": "antithesis", "ALFRED": "answer", "BABS": "research"}[persona]


class ScriptedModel:
    """`rules` maps a request kind (route, thoughts, evaluation, thesis, antithesis, critic, answer,
    research, forge, forge_tests) to a value or a callable(call_number) -> value; dict values are JSON
    replies, a `Reply` is returned as it is (e.g. to set completion_tokens). A callable with
    `wants_messages = True` is called as (call_number, messages); a callable may raise, as a failing
    model would. Each call is recorded with its messages and options in `calls`."""

    backend = "scripted"

    def __init__(self, rules: dict[str, Any] | None = None, *, delay_s: float = 0.0,
                 model_name: str = "scripted-0.5b") -> None:
        self.model_name = model_name  # what resolve() names, as a manager would (it sizes the prompts)
        self.rules = {
            "route": {"research": False, "reason": "The task is self-contained."},
            "thoughts": {"thoughts": ["Work from first principles.", "Check known cases.", "Estimate roughly."]},
            "evaluation": {"scores": [6, 9, 3], "best": 1, "comment": "Known cases ground it."},
            "thesis": "Two plus two is four, by counting.",
            "thesis_adapted": "Four: two and two, counted together.",
            "antithesis": "I agree: two plus two is four, by counting.",
            "critic": {"dissonance": 0.1, "consensus": True, "reason": "They agree."},
            "answer": "The answer is 4.",
            "research": "Nothing relevant.",
            "forge": forge_reply,
            "forge_tests": "```python\nassert add_two_integers(2, 3) == 5\nassert add_two_integers(0, 0) == 0\n```",
            "amendment": {"persona": "ROBIN", "principle": "Listen before answering.", "rationale": "r"},
            **(rules or {}),
        }
        self.delay_s = delay_s
        self.calls: list[dict[str, Any]] = []

    def resolve(self, persona_or_model: str) -> tuple[str, str]:
        return persona_or_model, self.model_name

    def chat(self, persona_or_model: str, messages: list[dict], *, tools=None, json_schema=None, on_token=None,
             max_tokens=None, temperature=None, stop=None, seed=None, adapter="promoted") -> Reply:
        persona = persona_or_model.upper()
        kind = request_kind(persona, json_schema, messages)
        count = sum(1 for c in self.calls if c["kind"] == kind)
        self.calls.append({"persona": persona, "kind": kind, "messages": messages, "tools": tools,
                           "max_tokens": max_tokens, "temperature": temperature, "stop": stop, "seed": seed,
                           "adapter": adapter})
        # A fine-tune's adapter asked explicitly (compare in chat) answers by the "<kind>_adapted" rule.
        adapted = isinstance(adapter, dict) and bool(adapter.get("lora_path"))
        if kind == "first_answer" and kind not in self.rules:
            kind = "answer"  # ALFRED asked the task alone answers as he does at the end, unless told otherwise
        value = self.rules.get(f"{kind}_adapted", self.rules[kind]) if adapted else self.rules[kind]
        if callable(value):
            value = value(count, messages) if getattr(value, "wants_messages", False) else value(count)
        if self.delay_s:
            time.sleep(self.delay_s)
        if isinstance(value, Reply):
            return value
        if isinstance(value, dict) and "tool_calls" in value:
            return Reply(content="", tool_calls=value["tool_calls"], persona=persona)
        if isinstance(value, (dict, list)):
            return Reply(content=json.dumps(value), parsed=value, persona=persona)
        if on_token:
            for i in range(0, len(value), 7):
                on_token(value[i:i + 7])
        return Reply(content=value, persona=persona)

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Hashed bag-of-words vectors: texts sharing words are close, unrelated texts far apart."""
        out = []
        for text in texts:
            vec = [0.0] * 64
            for word in text.lower().replace(",", " ").replace(".", " ").replace(":", " ").split():
                vec[hashlib.sha256(word.encode()).digest()[0] % 64] += 1.0
            out.append(vec)
        return out

    def kinds(self) -> list[str]:
        return [c["kind"] for c in self.calls]


def sequence(*values: Any) -> Callable[[int], Any]:
    """A rule giving each value in turn, then repeating the last."""
    return lambda n: values[min(n, len(values) - 1)]
