"""The eval modes for the `tools` suite and the hidden-test judge; no Django, so the runner service and
bench/evals.py run the very same code.

Modes, each given one item, the model and the forge settings:
- `single`: the model asked once (greedy), with the request as written, to write the function; its code
  is judged as it is.
- `forge`: the product's Tool Forge loop; the tool it would register is judged.
- `resample`: independent samples of the forge's own first request (the request with its sentences
  listed as rules) at the forge's token budget for the item, the first that passes the spec's own
  examples chosen (the first that passes the static checks when the spec has none).
Every judged piece of code runs in the product's sandbox, never in this process.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from forge import sandbox
from forge.config import ForgeSettings
from forge.evals.suites import TaskItem, ToolItem, check_answer, hidden_checks
from forge.toolforge import (
    CODE_STOP,
    Check,
    Seeds,
    extract_code,
    forge_loop,
    function_prompt,
    judge,
    requested_name,
    spec_checks,
    split_tests,
    static_check,
)

TOOL_MODES = ("single", "forge", "resample")
# graph: a full run, executed by the runner service (it needs the database); closedbook: the same run with
# retrieval switched off (BABS finds nothing), to measure what memory and documents add.
TASK_MODES = ("single", "graph", "closedbook")
TASK_MAX_TOKENS = 256
RESAMPLE_TEMPERATURE = 0.8
MAX_RESAMPLES = 12  # a backstop: a model reporting no tokens would otherwise never exhaust the budget
OUTPUT_CHARS = 4000
SEED = 0  # an eval run's default seed: two runs of one variant draw the same samples


def item_seed(seed: int | None, item_id: str) -> int | None:
    """The first sampler seed of one item in a run seeded `seed` (None: unseeded, the backend picks).
    Items get unrelated seeds; an item keeps its seed in every run and mode seeded alike."""
    if seed is None:
        return None
    return zlib.crc32(f"{seed}:{item_id}".encode()) % 2**31

@dataclass
class ItemResult:
    """One item under one mode: pass/fail on the hidden tests and what it cost."""

    item_id: str
    category: str
    style: str
    passed: bool
    attempts: int = 0
    tokens: int = 0
    seconds: float = 0.0
    output: str = ""  # the final code (tools) or answer (tasks)
    why: str = ""  # why it failed, in words
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Produced:
    """What a mode produced for an item before judging."""

    code: str
    attempts: int
    tokens: int
    error: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def run_hidden(code: str, item: ToolItem, config: ForgeSettings) -> tuple[bool, str]:
    """The item's hidden tests against `code`: each test's expression is evaluated in the sandbox with
    the forge's limits, its value compared with the expected one here (the forge's own judge), so the
    code under test cannot forge a pass."""
    limits = config.limits
    if item.timeout_s > limits.wall_s:
        limits = sandbox.Limits(**{**asdict(limits), "wall_s": item.timeout_s})
    checks = [Check(expression, expected, "hidden") for expression, expected in hidden_checks(item.hidden_tests)]
    verdict = judge(code, checks, backend=config.backend, limits=limits)
    if verdict.import_error:
        return False, verdict.import_error
    for check, result in zip(checks, verdict.results, strict=True):
        if not result.get("ok"):
            got = f"raised {result['error']}" if result.get("error") else f"returned {result.get('value')}"
            return False, f"hidden test `{check.source()}` failed: the call {got}"[:1000]
    return True, ""


def _chat(model: Any, messages: list[dict[str, str]], *, config: ForgeSettings, temperature: float,
          seeds: Seeds) -> tuple[str, int]:
    result = model.chat("BRICK", messages, max_tokens=config.max_tokens, temperature=temperature, stop=CODE_STOP,
                        **seeds.options())
    return result.content or "", int(getattr(result, "completion_tokens", 0) or 0)


def _code_of(reply: str) -> str:
    source = extract_code(reply)
    try:
        return split_tests(source)[0]
    except SyntaxError:
        return source


def sample_code(item: ToolItem, model: Any, config: ForgeSettings, *, temperature: float,
                seeds: Seeds, listed: bool = True) -> tuple[str, int]:
    """One reply to the forge's own first request for the item (`listed=False`: to the request as
    written, nothing added): (its code, completion tokens), drawn with the next of `seeds` (the forge's
    own counting, so sample k has the forge's k-th call's seed)."""
    messages = function_prompt(item.spec, config.allowed_imports, requested_name(item.spec), listed=listed)
    reply, tokens = _chat(model, messages, config=config, temperature=temperature, seeds=seeds)
    return _code_of(reply), tokens


def produce_single(item: ToolItem, model: Any, config: ForgeSettings, *, seed: int | None = None) -> Produced:
    # One plain call: the request as written, greedy. Seeded too: a seeded call evaluates its prompt
    # afresh, so it answers alike in every run.
    code, tokens = sample_code(item, model, config, temperature=0.0, seeds=Seeds(seed), listed=False)
    return Produced(code=code, attempts=1, tokens=tokens)


def produce_forge(item: ToolItem, model: Any, config: ForgeSettings, *, seed: int | None = None) -> Produced:
    outcome = forge_loop(item.spec, model=model, config=config, seed=seed)
    attempts = [a.as_dict() for a in outcome.attempts]
    kept = ("number", "passed", "error", "tokens", "truncated_retries", "spec_passed", "words_passed",
            "model_passed", "stdout")
    detail = {"attempts": [{**{k: a[k] for k in kept}, "code": a["code"][:OUTPUT_CHARS]} for a in attempts],
              "notes": outcome.notes, "tests": outcome.tests}
    if not outcome.ok:
        return Produced(code="", attempts=len(attempts), tokens=outcome.tokens, error=outcome.error, detail=detail)
    return Produced(code=outcome.code, attempts=len(attempts), tokens=outcome.tokens, detail=detail)


def produce_resample(item: ToolItem, model: Any, config: ForgeSettings, *, budget: int,
                     seed: int | None = None) -> Produced:
    """Independent samples until the token budget is spent; the first that passes the spec's examples."""
    name = requested_name(item.spec)
    checks = spec_checks(item.spec, name)
    seeds = Seeds(seed)
    tokens, samples, first = 0, 0, ""
    while (tokens < budget or samples == 0) and samples < MAX_RESAMPLES:
        code, used = sample_code(item, model, config, temperature=0.0 if samples == 0 else RESAMPLE_TEMPERATURE,
                                 seeds=seeds)
        tokens += used
        samples += 1
        first = first or code  # the greedy sample, judged as it is when nothing better turns up
        if not static_check(code, "", config.allowed_imports).ok:
            continue
        if not checks:
            return Produced(code=code, attempts=samples, tokens=tokens, detail={"chosen_by": "static checks"})
        verdict = judge(code, checks, backend=config.backend, limits=config.limits)
        if not verdict.import_error and all(r.get("ok") for r in verdict.results):
            return Produced(code=code, attempts=samples, tokens=tokens, detail={"chosen_by": "spec examples"})
    why = "none passed the examples" if checks else "none passed the static checks"
    return Produced(code=first, attempts=samples, tokens=tokens,
                    detail={"chosen_by": f"first sample ({why})" if first else "none"})


def run_tool_item(item: ToolItem, mode: str, model: Any, config: ForgeSettings, *,
                  budget: int | None = None, seed: int | None = SEED) -> ItemResult:
    """One item under one mode, judged by its hidden tests; a crash of the mode is a failed item.
    `seed`: the run's seed (item_seed); None leaves every draw to the backend."""
    if mode not in TOOL_MODES:
        raise ValueError(f"unknown mode {mode!r} for the tools suite: choose {', '.join(TOOL_MODES)}")
    started = time.perf_counter()
    try:
        if mode == "single":
            produced = produce_single(item, model, config, seed=item_seed(seed, item.id))
        elif mode == "forge":
            produced = produce_forge(item, model, config, seed=item_seed(seed, item.id))
        else:
            produced = produce_resample(item, model, config, budget=budget or config.max_tokens * config.max_attempts,
                                        seed=item_seed(seed, item.id))
    except Exception as exc:  # recorded on the item; the run goes on with the next one
        return ItemResult(item.id, item.category, item.style, False, seconds=time.perf_counter() - started,
                          why=f"the {mode} mode crashed: {type(exc).__name__}: {exc}")
    result = ItemResult(item.id, item.category, item.style, False, attempts=produced.attempts,
                        tokens=produced.tokens, output=produced.code, detail=produced.detail)
    if not produced.code.strip():
        result.why = produced.error or "no code was produced"
    else:
        try:
            result.passed, error = run_hidden(produced.code, item, config)
        except sandbox.SandboxError as exc:
            result.passed, error = False, f"the sandbox could not run the hidden tests: {exc}"
        result.why = "" if result.passed else (error or "the hidden tests failed")
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def run_tool_items(items: list[ToolItem], mode: str, model: Any, config: ForgeSettings, *,
                   budgets: dict[str, int] | None = None, seed: int | None = SEED,
                   on_result: Callable[[ItemResult], None] | None = None) -> list[ItemResult]:
    """Every item in order; `on_result` after each (progress, persistence)."""
    results = []
    for item in items:
        result = run_tool_item(item, mode, model, config, budget=(budgets or {}).get(item.id), seed=seed)
        results.append(result)
        if on_result:
            on_result(result)
    return results


def run_task_single(item: TaskItem, model: Any, *, persona: str = "ALFRED",
                    adapter: dict[str, Any] | None = None) -> ItemResult:
    """A task asked once of a persona's model (ALFRED's by default, or with a fine-tune's `adapter`, see
    ModelManager.chat), with no memory and no tools; the answer checked by its rule."""
    started = time.perf_counter()
    result = ItemResult(item.id, item.category, "", False, attempts=1)
    options: dict[str, Any] = {"adapter": adapter} if adapter is not None else {}
    try:
        reply = model.chat(persona, [{"role": "user", "content": item.task}], max_tokens=TASK_MAX_TOKENS,
                           temperature=0.0, **options)
    except Exception as exc:  # recorded on the item; the run goes on with the next one
        result.why = f"the model call failed: {type(exc).__name__}: {exc}"
    else:
        result.output = reply.content or ""
        result.tokens = int(getattr(reply, "completion_tokens", 0) or 0)
        result.passed, reason = check_answer(item, result.output)
        result.why = "" if result.passed else reason
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def summarise(results: list[ItemResult]) -> dict[str, Any]:
    """Pass rate overall and per category and style, with tokens and seconds."""
    def block(rows: list[ItemResult]) -> dict[str, Any]:
        n = len(rows)
        return {"items": n, "passed": sum(r.passed for r in rows),
                "pass_rate": round(sum(r.passed for r in rows) / n, 4) if n else 0.0,
                "tokens": sum(r.tokens for r in rows), "seconds": round(sum(r.seconds for r in rows), 1)}

    out = {"overall": block(results), "categories": {}, "styles": {}}
    for key, attr in (("categories", "category"), ("styles", "style")):
        for value in sorted({getattr(r, attr) for r in results}):
            out[key][value] = block([r for r in results if getattr(r, attr) == value])
    return out
