"""Routing of the cognitive graph with a scripted model: consensus, max turns, tools, research."""
from __future__ import annotations

import pytest

from personas.graph import GraphDeps, GraphSettings, build_graph
from personas.graph.nodes import parse_tool_request
from tests.personas.scripted import ScriptedModel, sequence

SPEC = "add_two_integers(a, b) returns the sum of two integers, e.g. add_two_integers(2, 3) == 5"


class Recorder:
    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.dissonance_events: list[float] = []
        self.forged: list[str] = []
        self.budgets: list[dict] = []
        self.searched: list[str] = []

    def deps(self, model: ScriptedModel, **overrides) -> GraphDeps:
        settings = overrides.pop("settings", GraphSettings(thoughts=3, max_turns=3))
        fields = {
            "on_dissonance": lambda score, detail: self.dissonance_events.append(score),
            "forge": lambda spec, **budget: self.forged.append(spec) or self.budgets.append(budget) or {
                "status": "created", "note": f"tool for {spec} ready"},
            "memory_search": lambda q, k: self.searched.append(q) or [],
            **overrides,
        }
        return GraphDeps(model=model, record_step=lambda **s: self.steps.append(s), settings=settings, **fields)

    def kinds(self) -> list[str]:
        return [s["kind"] for s in self.steps]


def run_graph(model: ScriptedModel, rec: Recorder, task: str = "What is 2 + 2?", **overrides) -> dict:
    graph = build_graph(rec.deps(model, **overrides))
    return graph.invoke({"run_id": 1, "task": task, "source": "architect", "step": 0})


def test_consensus_stops_after_one_exchange():
    model, rec = ScriptedModel(), Recorder()
    final = run_graph(model, rec)
    assert rec.kinds() == ["route", "thoughts", "evaluation", "thesis", "antithesis", "dissonance", "answer", "memory"]
    assert final["turn"] == 1 and final["consensus"] is True
    assert final["final_answer"] == "The answer is 4."
    assert final["best_candidate"] == 1  # ROBIN scored the second thought highest
    assert "Check known cases." in model.calls[3]["messages"][-1]["content"]  # BRICK develops the best one
    assert rec.dissonance_events == []
    keys = [s["key"] for s in rec.steps]
    assert len(keys) == len(set(keys))


def test_disagreement_runs_max_turns_and_raises_dissonance_events():
    model = ScriptedModel({
        "antithesis": "No. That ignores the people involved entirely.",
        "critic": {"dissonance": 0.95, "consensus": False, "reason": "Opposed views."},
    })
    rec = Recorder()
    final = run_graph(model, rec, settings=GraphSettings(thoughts=2, max_turns=2,
                                                         dissonance_threshold=0.4))
    assert model.kinds().count("thesis") == 2 and model.kinds().count("antithesis") == 2
    assert final["turn"] == 2 and final["consensus"] is False
    assert len(final["dissonance"]) == 2 and all(0.4 < d <= 1.0 for d in final["dissonance"])
    assert rec.dissonance_events == final["dissonance"][:1]  # one event per run, not one per turn
    # The second thesis is a revision that sees ROBIN's objection.
    revision_prompt = [c for c in model.calls if c["kind"] == "thesis"][1]["messages"][-1]["content"]
    assert "ignores the people involved" in revision_prompt


def test_tool_required_routes_through_the_forge_and_back_to_brick():
    model = ScriptedModel({
        "thesis": sequence("I need exact arithmetic.\nTOOL_REQUIRED: " + SPEC,
                           "With the tool's result: 4."),
    })
    rec = Recorder()
    final = run_graph(model, rec)
    assert rec.forged == [SPEC]
    assert rec.kinds()[:6] == ["route", "thoughts", "evaluation", "thesis", "tool_request", "thesis"]
    assert rec.steps[3]["data"]["tool_spec"] == SPEC
    assert "TOOL_REQUIRED" not in rec.steps[3]["content"]
    second_prompt = [c for c in model.calls if c["kind"] == "thesis"][1]["messages"][-1]["content"]
    assert "tool for add_two_integers(a, b)" in second_prompt
    assert final["final_answer"]


def test_the_forge_gets_what_the_run_has_left_and_its_tokens_count_against_the_run():
    model = ScriptedModel({"thesis": sequence("I need exact arithmetic.\nTOOL_REQUIRED: " + SPEC, "It is 4.")})
    rec = Recorder()

    def forged(spec: str, **budget) -> dict:
        rec.budgets.append(budget)
        return {"status": "failed", "note": "no", "tokens": 700}

    run_graph(model, rec, forge=forged, settings=GraphSettings(run_tokens=3000, run_seconds=240))
    [budget] = rec.budgets
    request = next(s for s in rec.steps if s["kind"] == "tool_request")
    before = rec.steps[rec.steps.index(request) - 1]["data"]["budget"]["tokens"]
    assert budget["tokens_left"] == 3000 - before and 0 < budget["seconds_left"] <= 240
    assert request["data"]["budget"]["tokens"] == before + 700
    # Without budgets the forge is not bounded.
    rec = Recorder()
    run_graph(ScriptedModel({"thesis": sequence("TOOL_REQUIRED: " + SPEC, "4.")}), rec,
              settings=GraphSettings(run_tokens=0, run_seconds=0))
    assert rec.budgets == [{"tokens_left": None, "seconds_left": None}]


def test_repeated_tool_requests_are_capped():
    spec = "square_root(x) returns the square root of x, e.g. square_root(9) == 3"
    model = ScriptedModel({"thesis": "Still stuck.\nTOOL_REQUIRED: " + spec})
    rec = Recorder()
    run_graph(model, rec, settings=GraphSettings(max_tool_requests=2, max_turns=1))
    assert len(rec.forged) == 1  # the same request again is refused, not forged twice
    assert rec.kinds().count("tool_request") + rec.kinds().count("tool_rejected") == 2  # then the cap holds


def test_research_route_asks_babs_who_reports_empty_memory_plainly():
    model = ScriptedModel({"route": {"research": True, "reason": "Earlier runs may help."}})
    rec = Recorder()
    final = run_graph(model, rec)
    # The route searches once (nothing close: ALFRED's model decides); BABS reads what it found.
    assert rec.searched == ["What is 2 + 2?"]
    assert rec.kinds()[1] == "research"
    assert "nothing relevant" in final["babs_report"].lower()
    assert "BABS" not in [c["persona"] for c in model.calls]  # no model call for an empty search


def test_a_close_memory_sends_babs_to_research_without_asking_alfreds_model():
    model = ScriptedModel({"route": {"research": False, "reason": "Self-contained."}, "research": "Run 7 says 4 [1]."})
    rec = Recorder()
    close = [{"text": "2+2 was computed as 4", "run_id": 7, "relevance": 0.81,
              "source": {"kind": "run", "label": "run #7", "url": "/runs/7/"}}]
    final = run_graph(model, rec, memory_search=lambda q, k: close)
    assert "route" not in model.kinds() and final["research"] is True
    assert "Memory holds something close to this task: run #7 (similarity 0.81)" in final["route_reason"]
    far = [{**close[0], "relevance": 0.4}]  # related, not close: ALFRED's model decides (here: no research)
    model, rec = ScriptedModel({"route": {"research": False, "reason": "Self-contained."}}), Recorder()
    final = run_graph(model, rec, memory_search=lambda q, k: far)
    assert "route" in model.kinds() and final["research"] is False


def test_research_with_memories_is_summarised_by_babs():
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "Run 7 found 4 [1]."})
    rec = Recorder()
    deps_memories = [{"text": "2+2 was computed as 4", "run_id": 7}]
    final = run_graph(model, rec, memory_search=lambda q, k: deps_memories)
    assert final["babs_report"] == "Run 7 found 4 [1]."
    assert "2+2 was computed as 4" in [c for c in model.calls if c["persona"] == "BABS"][0]["messages"][-1]["content"]


def test_live_tools_are_bound_to_every_brick_thesis_call():
    schema = [{"type": "function", "function": {"name": "adder", "description": "add", "parameters": {}}}]
    model = ScriptedModel()
    rec = Recorder()
    run_graph(model, rec, tools=lambda: schema)
    thesis_calls = [c for c in model.calls if c["kind"] == "thesis"]
    assert thesis_calls and all(c["tools"] == schema for c in thesis_calls)


def test_tool_calls_from_the_model_are_executed_and_fed_back():
    model = ScriptedModel({"thesis": sequence({"tool_calls": [{"name": "adder", "arguments": {"a": 2, "b": 2}}]},
                                              "The adder says 4.")})
    rec = Recorder()
    called = []
    run_graph(model, rec, tools=lambda: [{"type": "function", "function": {"name": "adder"}}],
              call_tool=lambda name, args: called.append((name, args)) or 4)
    assert called == [("adder", {"a": 2, "b": 2})]
    assert "tool_call" in rec.kinds()
    assert [s for s in rec.steps if s["kind"] == "thesis"][0]["content"] == "The adder says 4."


@pytest.mark.parametrize("text,spec", [
    ("Plan.\nTOOL_REQUIRED: fetch the weather", "fetch the weather"),
    ("**TOOL_REQUIRED:** `sum a list`", "sum a list"),
    ("No request here.", ""),
    ("Counting.\n#### TOOL_REQUIRED: count_words(text) returns how many words, e.g. count_words('a b') == 2",
     "count_words(text) returns how many words, e.g. count_words('a b') == 2"),
    ("- **TOOL_REQUIRED:** sum a list", "sum a list"),
    # The prompt's template copied back is no request; a real one after it is.
    ("#### TOOL_REQUIRED: <a precise description of the function you need> returns <result>, e.g., <a call> == "
     "<its result>.\nStep.\n2. TOOL_REQUIRED: days(a, b) returns the days between, e.g. days(1, 3) == 2",
     "days(a, b) returns the days between, e.g. days(1, 3) == 2"),
    ("Plan.\nTOOL_REQUIRED: <function name>(<inputs>) returns <result>, e.g. <a call> == <its result>", ""),
])
def test_parse_tool_request(text, spec):
    cleaned, found = parse_tool_request(text)
    assert found == spec
    assert "TOOL_REQUIRED" not in cleaned


def test_junk_structured_replies_degrade_to_fallbacks_instead_of_failing_the_run():
    from personas.inference import ModelOutputInvalid

    def junk(n):
        raise ModelOutputInvalid("ALFRED's reply is not valid JSON: Unterminated string (cut off at max_tokens)")

    model = ScriptedModel({"route": junk, "thoughts": junk, "evaluation": junk, "critic": junk})
    rec = Recorder()
    final = run_graph(model, rec, settings=GraphSettings(max_turns=1))
    assert final["final_answer"] == "The answer is 4."
    unparsed = [s for s in rec.steps if "unparsed" in s["data"]]
    assert [s["kind"] for s in unparsed] == ["route", "thoughts", "dissonance"]  # one thought: nothing to score
    critic = [s for s in rec.steps if s["kind"] == "dissonance"][0]
    assert critic["dissonance"] == critic["data"]["embedding_distance"]


@pytest.mark.parametrize(("name", "billions"), [
    ("gemma2:9b", 9.0), ("llama3.1:8b", 8.0), ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1.5),
    ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 0.5), ("SmolLM2-135M-Instruct.Q4_1.gguf", 0.135),
    ("phi3:mini", None), ("mistral:7b-instruct-q4_0", 7.0), ("", None),
])
def test_a_models_size_is_read_from_its_name(name, billions):
    from personas.graph.prompts import model_billions

    assert model_billions(name) == billions


def test_prompts_are_sized_by_the_model_each_persona_speaks_with_or_by_the_setting():
    from personas.graph.prompts import prompt_size

    assert prompt_size("auto", "embedded", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf") == "small"
    assert prompt_size("auto", "ollama", "llama3.1:8b") == "large"
    assert prompt_size("auto", "ollama", "phi3:mini") == "large"  # no size in the name: Ollama's are large
    assert prompt_size("auto", "embedded", "my-model.gguf") == "small"
    assert prompt_size("small", "ollama", "llama3.1:8b") == "small"
    assert prompt_size("large", "embedded", "x-0.5b.gguf") == "large"
    with pytest.raises(ValueError, match="prompt_style must be one of auto, small, large"):
        GraphSettings.from_dict({"prompt_style": "huge"})

    def asked(model_of) -> dict[str, str]:
        model, rec = ScriptedModel(), Recorder()
        run_graph(model, rec, model_of=model_of)
        return {c["kind"]: c["messages"][-1]["content"] for c in model.calls}

    small = asked(lambda persona: ("embedded", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"))
    large = asked(lambda persona: ("ollama", "gemma2:9b" if persona == "ALFRED" else "llama3.1:8b"))
    mixed = asked(lambda persona: ("ollama", "gemma2:9b") if persona == "ALFRED" else ("embedded", "x-0.5b.gguf"))
    assert "First say what exactly is asked" in large["thesis"] and "First say" not in small["thesis"]
    assert "differ in method" in large["thoughts"] and "differ in method" not in small["thoughts"]
    assert "redo its key computation" in large["antithesis"] and "redo" not in small["antithesis"]
    assert "decide yourself" in large["answer"] and "decide yourself" not in small["answer"]
    assert "decide yourself" in mixed["answer"] and "First say" not in mixed["thesis"]  # per persona
