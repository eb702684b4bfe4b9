"""Hollow contributions, the tool-spec gate, budgets, memory gating and an honest dissonance score —
each case scripted, showing that the run stays useful and its transcript says what happened."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from personas.graph import GraphSettings, build_graph, prompts, quality
from personas.graph.nodes import parse_tool_request
from personas.inference import ModelOutputInvalid
from tests.personas.scripted import Reply, ScriptedModel, sequence
from tests.personas.test_graph import Recorder, run_graph

TASK = "How should a small library welcome its first hundred volunteers?"
GOOD_THOUGHTS = {"thoughts": ["Map each volunteer's skills first.", "Pair newcomers with a mentor.",
                              "Start with a short weekly rota."]}


def steps_of(rec: Recorder, kind: str) -> list[dict]:
    return [s for s in rec.steps if s["kind"] == kind]


def test_a_single_candidate_is_asked_for_again_and_distinct_lines_go_on():
    model = ScriptedModel({"thoughts": sequence({"thoughts": [TASK, TASK, TASK]}, GOOD_THOUGHTS)})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK)
    assert model.kinds().count("thoughts") == 2
    assert final["candidates"] == GOOD_THOUGHTS["thoughts"]
    step = steps_of(rec, "thoughts")[0]
    assert "copies the task" in " ".join(step["data"]["dropped"])
    assert "asked again" in step["content"] and step["data"]["fallback"] is False


def test_echoed_instructions_and_near_duplicates_are_dropped_and_the_run_says_so():
    echo = "Propose 3 distinct candidate lines of thought for approaching this task"
    model = ScriptedModel({"thoughts": {"thoughts": [echo, "Pair newcomers with a mentor.",
                                                     "Pair newcomers with a mentor!"]}})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK)
    step = steps_of(rec, "thoughts")[0]
    assert final["candidates"] == ["Pair newcomers with a mentor."]
    assert any("repeats the instructions" in d for d in step["data"]["dropped"])
    assert any("repeats an earlier line" in d for d in step["data"]["dropped"])
    assert step["data"]["fallback"] is True and "continuing with 1 real line" in step["content"]
    assert "Only one real line" in steps_of(rec, "evaluation")[0]["content"]
    assert "candidates" in final["fallbacks"]


def test_truncated_candidate_json_counts_its_tokens_and_is_asked_again():
    def cut(count: int):
        if count == 0:
            raise ModelOutputInvalid("cut off", content='{"thoughts": ["Map the sk', completion_tokens=256)
        return GOOD_THOUGHTS

    model = ScriptedModel({"thoughts": cut})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK)
    step = steps_of(rec, "thoughts")[0]
    assert final["candidates"] == GOOD_THOUGHTS["thoughts"]
    assert "cut off or unreadable" in step["content"]
    assert final["tokens_used"] >= 256 + 5  # the lost reply's tokens are counted, not recorded as 0
    assert step["data"]["budget"]["tokens"] >= 256


def test_an_empty_thesis_is_asked_for_again_with_a_shorter_prompt():
    model = ScriptedModel({"thesis": sequence("", "Give each volunteer a mentor and a first task.")})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK)
    thesis_calls = [c for c in model.calls if c["kind"] == "thesis"]
    assert len(thesis_calls) == 2
    assert "Answer this directly" in thesis_calls[1]["messages"][-1]["content"]
    assert final["thesis"] == "Give each volunteer a mentor and a first task."
    assert "asked again" in steps_of(rec, "thesis")[0]["content"]


def test_a_thesis_that_stays_hollow_falls_back_to_the_chosen_line_and_says_so():
    model = ScriptedModel({"thesis": "", "thoughts": GOOD_THOUGHTS,
                           "evaluation": {"scores": [3, 9, 2], "best": 1, "comment": "c"}})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK, settings=GraphSettings(max_turns=1))
    step = steps_of(rec, "thesis")[0]
    assert step["data"]["fallback"] is True
    assert step["content"].startswith("Pair newcomers with a mentor.")
    assert "chosen line of thought stands in" in step["content"]
    assert "(BRICK gave no thesis.)" not in final["final_answer"]
    # A fallback thesis is not put in the dialogue as if BRICK had said it.
    assert all(turn["persona"] != "BRICK" for turn in final.get("dialogue", []))


def test_a_thesis_that_starts_with_tool_required_goes_to_the_forge_first():
    spec = "mentor_pairs(n) returns how many mentor pairs n volunteers make, e.g. mentor_pairs(10) == 5"
    model = ScriptedModel({"thesis": sequence(f"TOOL_REQUIRED: {spec}", "With pairs of two: 50 pairs.")})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK)
    assert rec.forged == [spec]
    first = steps_of(rec, "thesis")[0]
    assert first["content"] == "BRICK asks for a tool before giving a thesis."
    assert final["thesis"] == "With pairs of two: 50 pairs."
    # ROBIN answered the real thesis, never an empty one.
    robin_prompt = [c for c in model.calls if c["kind"] == "antithesis"][0]["messages"][-1]["content"]
    assert "With pairs of two" in robin_prompt


@pytest.mark.parametrize("spec, reason", [
    (TASK, "restates the task"),
    ("The forge could not build this tool: gave up after 3 attempt(s)", "message of the forge"),
    ("a function that fetches the library's website and returns its text, e.g. fetch(url)", "pure function"),
    ("something useful", "too short"),
    ("count the volunteers somehow and more", "does not say"),
    ("BillingService::plan(id) returns the plan, e.g. BillingService::plan(1) == Plan(1)", "method of some class"),
    ("mentor_pairs(n) returns the number of pairs of n volunteers, for example half of them", "example call"),
])
def test_tool_requests_that_are_no_function_are_rejected_and_go_back_to_brick(spec, reason):
    model = ScriptedModel({"thesis": sequence(f"I need help.\nTOOL_REQUIRED: {spec}", "Without a tool: mentors.")})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK)
    assert rec.forged == []
    rejected = steps_of(rec, "tool_rejected")
    assert len(rejected) == 1 and reason in rejected[0]["content"]
    second_prompt = [c for c in model.calls if c["kind"] == "thesis"][1]["messages"][-1]["content"]
    assert "Tool request rejected" in second_prompt
    assert final["final_answer"]


def test_a_registered_tool_that_fits_is_offered_instead_of_forging_another():
    tool = {"type": "function", "function": {"name": "mentor_pairs", "description": "Mentor pairs for n people.",
                                             "parameters": {"type": "object", "properties": {}}}}
    spec = "mentor_pairs(n) returns how many mentor pairs n volunteers make, e.g. mentor_pairs(10) == 5"
    model = ScriptedModel({"thesis": sequence(f"Counting.\nTOOL_REQUIRED: {spec}", "Fifty pairs.")})
    rec = Recorder()
    run_graph(model, rec, task=TASK, tools=lambda: [tool])
    assert rec.forged == []
    step = steps_of(rec, "tool_request")[0]
    assert step["data"]["status"] == "existing" and "mentor_pairs already exists" in step["content"]


def test_robin_echoing_its_instructions_is_retried_then_left_out_and_the_critic_skipped():
    echo = ("Answer it: where you disagree give your antithesis, where you can, a synthesis. "
            "If you fully agree, begin with 'I agree'. Keep it short.")
    model = ScriptedModel({"antithesis": echo})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK)
    assert model.kinds().count("antithesis") == 2  # asked once more, shorter
    step = steps_of(rec, "antithesis")[0]
    assert step["data"]["fallback"] is True and "repeated its own instructions" in step["content"]
    assert "critic" not in model.kinds() and steps_of(rec, "dissonance") == []
    assert echo not in final["final_answer"]


def test_a_hollow_final_answer_falls_back_to_the_thesis_and_never_enters_memory():
    written: list[dict] = []
    model = ScriptedModel({"answer": ""})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK, memory_write=lambda state: written.append(state) or {"note": "x"})
    assert model.kinds().count("answer") == 2
    assert final["answer_fallback"] is True
    assert final["final_answer"] == "Two plus two is four, by counting."  # BRICK's last real thesis
    assert written == []
    memory_step = steps_of(rec, "memory")[0]
    assert memory_step["content"].startswith("Not stored in memory") and memory_step["data"]["stored"] is False
    assert steps_of(rec, "answer")[0]["data"]["fallback"] is True


def test_a_final_answer_that_only_agrees_is_asked_again_and_the_second_answer_stands():
    model = ScriptedModel({"answer": sequence("I agree.", "The reversed word is 'dlrow'.")})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK)
    assert model.kinds().count("answer") == 2
    assert final["final_answer"] == "The reversed word is 'dlrow'." and final["answer_fallback"] is False
    assert "it only agreed, without answering" in steps_of(rec, "answer")[0]["data"]["notes"][0]


@pytest.mark.parametrize("text, only", [
    ("I agree.", True), ("Agreed with BRICK and ROBIN!", True), ("Yes, I fully agree with the thesis.", True),
    ("I agree: the answer is 42.", False), ("Yes.", False), ("I agree that Paris is the capital.", False),
])
def test_assent_only(text, only):
    assert bool(quality.assent_only(text)) is only


FIRST = GraphSettings(thoughts=3, max_turns=3, first_answer=True)


def test_alfred_answers_first_as_one_call_would_and_the_synthesis_weighs_that_answer():
    model = ScriptedModel({"first_answer": "It is 4."})
    rec = Recorder()
    final = run_graph(model, rec, task="What is 2 + 2?", settings=FIRST)
    assert rec.kinds()[:3] == ["route", "first_answer", "thoughts"]
    first = next(c for c in model.calls if c["kind"] == "first_answer")
    assert first["messages"] == [{"role": "user", "content": "What is 2 + 2?"}]  # the task alone, as asked
    assert final["first_answer"] == "It is 4." and steps_of(rec, "first_answer")[0]["content"] == "It is 4."
    synthesis = next(c for c in model.calls if c["kind"] == "answer")["messages"][-1]["content"]
    assert "Your own first answer, before the team's discussion:\nIt is 4." in synthesis
    assert "Keep your first answer unless" in synthesis


def test_the_first_answer_sees_the_sources_babs_found():
    memory = [{"text": "The library's code word is heron.", "relevance": 0.9, "source": {"label": "run 7"}}]
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "The code word is heron [1]."})
    rec = Recorder()
    run_graph(model, rec, task="What is the library's code word?", memory_search=lambda q, k: memory, settings=FIRST)
    first = next(c for c in model.calls if c["kind"] == "first_answer")["messages"][0]["content"]
    assert "[1] run 7: The library's code word is heron." in first
    assert first.endswith("What is the library's code word?")


def test_a_synthesis_that_copies_the_first_answer_is_an_answer_not_an_echo():
    model = ScriptedModel({"first_answer": "It is 4, because two and two make four.",
                           "answer": "It is 4, because two and two make four."})
    rec = Recorder()
    final = run_graph(model, rec, settings=FIRST)
    assert model.kinds().count("answer") == 1 and final["answer_fallback"] is False


def test_a_hollow_synthesis_falls_back_to_alfreds_first_answer_before_the_thesis():
    model = ScriptedModel({"first_answer": "Four.", "answer": ""})
    rec = Recorder()
    final = run_graph(model, rec, settings=FIRST)
    assert final["final_answer"] == "Four." and final["answer_fallback"] is True
    assert "ALFRED's first answer stands" in steps_of(rec, "answer")[0]["data"]["notes"][-1]


def test_a_hollow_first_answer_leaves_the_team_the_task_and_says_so():
    model = ScriptedModel({"first_answer": "What is 2 + 2?"})
    rec = Recorder()
    final = run_graph(model, rec, task="What is 2 + 2?", settings=FIRST)
    assert final["first_answer"] == ""
    assert "no first answer (it copied the task back)" in steps_of(rec, "first_answer")[0]["content"]
    synthesis = next(c for c in model.calls if c["kind"] == "answer")["messages"][-1]["content"]
    assert "Your own first answer" not in synthesis


def test_the_first_answer_is_off_unless_set():
    model = ScriptedModel()
    rec = Recorder()
    run_graph(model, rec)
    assert "first_answer" not in model.kinds() and not steps_of(rec, "first_answer")
    assert "alfred_first" not in build_graph(rec.deps(model)).get_graph().nodes  # no node that never runs
    assert "alfred_first" in build_graph(rec.deps(model, settings=FIRST)).get_graph().nodes
    assert GraphSettings.from_dict({"first_answer": True}).first_answer is True
    with pytest.raises(ValueError, match="graph.first_answer must be true or false"):
        GraphSettings.from_dict({"first_answer": "yes"})


def test_a_real_answer_is_stored():
    written: list[dict] = []
    rec = Recorder()
    run_graph(ScriptedModel(), rec, memory_write=lambda state: written.append(state) or {"note": "stored"})
    assert len(written) == 1


def test_a_critic_that_says_they_agree_cannot_report_high_dissonance():
    model = ScriptedModel({
        "antithesis": "Mentors matter, and a weekly rota keeps it light for everyone.",
        "critic": {"dissonance": 0.9, "consensus": False, "reason": "Both agree on the answer."},
    })
    rec = Recorder()
    final = run_graph(model, rec, task=TASK, settings=GraphSettings(dissonance_threshold=0.5))
    step = steps_of(rec, "dissonance")[0]
    assert step["dissonance"] < 0.35 and final["consensus"] is True
    assert "the critic says they agree" in step["content"]
    assert rec.dissonance_events == []


def test_memories_below_the_relevance_threshold_are_not_used():
    memories = [{"id": "a", "text": "The word with the most vowels is 'queueing'.", "relevance": 0.12}]
    model = ScriptedModel({"route": {"research": True, "reason": "maybe"}})
    rec = Recorder()
    final = run_graph(model, rec, task="Say hello in five words.", memory_search=lambda q, k: memories)
    assert final["memories"] == [] and "research" not in model.kinds()
    step = steps_of(rec, "research")[0]
    assert "1 weaker match" in step["content"]


def test_a_token_budget_that_runs_out_sends_the_run_to_alfred_who_says_so():
    model = ScriptedModel({
        "thoughts": Reply(content=json.dumps(GOOD_THOUGHTS), parsed=GOOD_THOUGHTS, completion_tokens=400),
        "antithesis": "No: the rota matters more than mentors.",
        "critic": {"dissonance": 0.9, "consensus": False, "reason": "They disagree on priorities."},
    })
    rec = Recorder()
    final = run_graph(model, rec, task=TASK, settings=GraphSettings(run_tokens=420, max_turns=5))
    assert model.kinds().count("thesis") == 1  # no second turn: the budget was spent
    assert "token budget (420 tokens) ran out" in final["budget_out"]
    assert steps_of(rec, "budget")[0]["content"].startswith("Budget: the token budget")
    assert final["final_answer"] == "The answer is 4."
    assert rec.steps[-1]["data"]["budget"]["tokens"] >= 420


def test_the_time_budget_excludes_waiting_and_cuts_the_run_short():
    now = [1000.0]
    model = ScriptedModel({
        "antithesis": "No: the rota matters more than mentors.",
        "critic": {"dissonance": 0.9, "consensus": False, "reason": "They disagree on priorities."},
    })
    original = model.chat

    def slow_chat(*args, **kwargs):
        now[0] += 50  # each contribution takes 50 s of the run's clock
        return original(*args, **kwargs)

    model.chat = slow_chat
    rec = Recorder()
    final = run_graph(model, rec, task=TASK, clock=lambda: now[0],
                      settings=GraphSettings(run_seconds=200, max_turns=5))
    assert "time budget (200 s) ran out" in final["budget_out"]
    assert model.kinds().count("thesis") <= 2
    assert final["final_answer"]


def slow_thesis(words: list[str], pause_s: float) -> ScriptedModel:
    """A scripted model whose BRICK thesis streams `words` one every `pause_s` seconds."""
    class Slow(ScriptedModel):
        def chat(self, persona_or_model, messages, **kwargs):
            on_token = kwargs.get("on_token")
            if persona_or_model == "BRICK" and kwargs.get("json_schema") is None and on_token:
                self.calls.append({"persona": "BRICK", "kind": "thesis", "messages": messages, "tools": None,
                                   "max_tokens": None, "temperature": None, "stop": None})
                for word in words:
                    on_token(word)
                    time.sleep(pause_s)
                return Reply(content="".join(words))
            return super().chat(persona_or_model, messages, **kwargs)

    return Slow()


def test_a_contribution_past_the_step_limit_is_cut_and_kept():
    rec = Recorder()
    model = slow_thesis(["Mentors ", "first, ", "then ", "rotas."], 0.6)
    final = run_graph(model, rec, task=TASK, settings=GraphSettings(step_seconds=1, max_turns=1))
    step = steps_of(rec, "thesis")[0]
    assert final["thesis"].startswith("Mentors first,") and final["thesis"] != "Mentors first, then rotas."
    assert "cut at the step limit (1 s)" in step["content"]


@pytest.mark.parametrize("text, prompt, task, expected", [
    ("", "p", "", "it was empty"),
    ("Where you disagree give your antithesis", "Answer it: where you disagree give your antithesis.", "",
     "it repeated its own instructions"),
    ("How should a small library welcome volunteers?", "x", "How should a small library welcome volunteers?",
     "it copied the task back"),
    ("Pair each newcomer with a mentor for a month.", "Task: how to welcome volunteers?", "welcome", ""),
    ("BABS's research report: Memory holds nothing relevant to this task yet.", "x", "",
     "it repeated a placeholder of the graph"),
])
def test_hollow_reason(text, prompt, task, expected):
    assert quality.hollow_reason(text, prompt=prompt, task=task) == expected


def test_tool_spec_gate_accepts_a_real_function():
    assert quality.tool_spec_problem("days_between(a, b) returns the days from date a to date b, "
                                     "e.g. days_between('2024-04-01', '2024-04-30') == 29", TASK) == ""
    assert quality.tool_spec_problem("count_vowels(text) returns how many vowels text has, "
                                     "e.g. count_vowels('hello') == 2", TASK) == ""


def test_brick_is_stopped_once_its_tool_request_line_is_complete():
    spec = "mentor_pairs(n) returns how many mentor pairs n volunteers make, e.g. mentor_pairs(10) == 5"
    spam = f"I need a tool.\nTOOL_REQUIRED: {spec}\nTOOL_REQUIRED: {spec}\nTOOL_REQUIRED: {spec}\n"
    model = ScriptedModel({"thesis": sequence(spam, "Fifty pairs.")})
    rec = Recorder()
    run_graph(model, rec, task=TASK)
    assert rec.forged == [spec]
    # The scripted model streams 7 characters at a time; generation stopped after the first request.
    first = steps_of(rec, "thesis")[0]
    assert first["data"]["tool_spec"] == spec
    assert first["result"].content.count("TOOL_REQUIRED:") == 1


TEMPLATE = "#### TOOL_REQUIRED: <a precise description of the function you need> returns <result>, e.g., <a call>."


def test_a_copied_request_template_is_no_request_and_leaves_neither_the_thesis_nor_the_answer():
    # Every request template the model is shown — the thesis prompts' and the codex's — copied back.
    shown = [m["content"] for size in ("small", "large") for m in prompts.thesis(None, {"task": TASK}, size)]
    shown.append((Path(__file__).resolve().parents[2] / "config" / "codex.toml").read_text())
    templates = {line.split("TOOL_REQUIRED:", 1)[1].strip(" '.\"") for text in shown
                 for line in re.findall(r"TOOL_REQUIRED:[^\n]*?>['.\"]", text)}
    assert len(templates) >= 2, templates
    for template in templates:
        assert quality.template_copy(template), template
        assert parse_tool_request(f"Plan.\n#### TOOL_REQUIRED: {template}") == ("Plan.", "")
    assert not quality.template_copy("count_words(<text>) returns <result>, e.g. count_words('a b') == 2")
    assert not quality.template_copy("mentor_pairs(n) returns the pairs, e.g. mentor_pairs(10) == 5")
    thesis = f"### Onboarding\nPair each newcomer with a mentor.\n\n{TEMPLATE}\n\n#### Justification: it is gentle."
    model = ScriptedModel({"thesis": thesis, "answer": f"Pair newcomers with mentors.\n{TEMPLATE}\nWeekly rota."})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK, settings=GraphSettings(max_turns=1))
    assert rec.forged == []  # nothing went to the forge
    first = steps_of(rec, "thesis")[0]
    assert "tool_spec" not in first["data"] and not first["data"]["fallback"]
    assert "TOOL_REQUIRED" not in first["content"] and "Pair each newcomer with a mentor." in first["content"]
    assert "#### Justification: it is gentle." in first["content"]
    assert final["final_answer"] == "Pair newcomers with mentors.\nWeekly rota."
    assert "held a TOOL_REQUIRED line" in " ".join(steps_of(rec, "answer")[0]["data"]["notes"])


def test_the_same_tool_request_twice_in_a_run_is_not_forged_again():
    spec = "mentor_pairs(n) returns how many mentor pairs n volunteers make, e.g. mentor_pairs(10) == 5"
    model = ScriptedModel({"thesis": sequence(f"TOOL_REQUIRED: {spec}", f"Again.\nTOOL_REQUIRED: {spec}", "Fifty.")})
    rec = Recorder()
    run_graph(model, rec, task=TASK, forge=lambda s, **_: rec.forged.append(s) or {"status": "failed", "note": "no"})
    assert rec.forged == [spec]
    assert "already requested in this run" in steps_of(rec, "tool_rejected")[0]["content"]


def test_the_short_second_ask_carries_what_babs_found():
    memories = [{"id": "a", "text": "The codename is COPPER LANTERN.", "relevance": 0.8}]
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "Memory [1]: COPPER LANTERN.",
                           "thesis": sequence("", "It is Copper Lantern.")})
    rec = Recorder()
    run_graph(model, rec, task="What is the codename?", memory_search=lambda q, k: memories)
    retry = [c for c in model.calls if c["kind"] == "thesis"][1]["messages"][-1]["content"]
    assert "Known: Memory [1]: COPPER LANTERN." in retry


@pytest.mark.parametrize("data, message", [
    ({"run_seconds": -1}, "graph.run_seconds must be 0"),
    ({"run_tokens": "lots"}, "graph.run_tokens must be a number"),
    ({"memory_min_relevance": 1.5}, "graph.memory_min_relevance must be between 0 and 1"),
    ({"step_seconds": True}, "graph.step_seconds must be a number"),
])
def test_bad_budget_settings_are_refused_with_the_key_named(data, message):
    with pytest.raises(ValueError, match=message):
        GraphSettings.from_dict(data)


def test_a_report_that_found_nothing_is_not_put_before_the_others():
    model = ScriptedModel({"route": {"research": True, "reason": "maybe"}})
    rec = Recorder()
    run_graph(model, rec, task="Who is the youngest?")
    thesis_prompt = [c for c in model.calls if c["kind"] == "thesis"][0]["messages"][-1]["content"]
    assert "research report" not in thesis_prompt and "Memory holds nothing" not in thesis_prompt


def test_stating_a_retrieved_fact_back_is_an_answer_not_an_echo():
    fact = "The codename for the autumn release of the billing service is COPPER LANTERN."
    memories = [{"id": "a", "text": fact, "relevance": 0.9}]
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": f"Memory [1] says: {fact}",
                           "thesis": fact, "antithesis": f"I agree. {fact}", "answer": fact})
    rec = Recorder()
    final = run_graph(model, rec, task="What is the codename of the autumn release of the billing service?",
                      memory_search=lambda q, k: memories)
    assert model.kinds().count("thesis") == 1 and model.kinds().count("answer") == 1  # no second asks
    # ALFRED cited nothing, but the answer repeats the memory's facts: the citation is added.
    assert final["final_answer"] == f"{fact} [1]" and not final.get("answer_fallback")
    assert not final.get("fallbacks")


def test_robin_reciting_its_own_system_prompt_is_hollow_too():
    system_prompt = ("You are ROBIN, the team's synthesiser. You read BRICK's analysis with an open heart: you weigh "
                     "what it means for the people involved, find what it leaves out and weave the threads together.")
    personas = {"ROBIN": {"system_prompt": system_prompt, "principles": ["Speak for the people a plan is for."]}}
    model = ScriptedModel({"antithesis": sequence(system_prompt + " I agree.", "Welcome them in small groups.")})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK, personas=lambda: personas)
    assert model.kinds().count("antithesis") == 2  # the recital was asked again
    assert "repeated its own instructions" in steps_of(rec, "antithesis")[0]["content"]
    assert final["antithesis"] == "Welcome them in small groups."


def test_a_contribution_ends_when_the_runs_time_budget_does_and_alfred_still_answers():
    model = slow_thesis(["Pair ", "each ", "newcomer ", "with ", "a ", "mentor ", "for ", "a ", "month."], 0.5)
    rec = Recorder()
    started = time.perf_counter()
    # The step limit alone (75 s) would let the 4.5 s thesis finish; the run's 2 s budget does not.
    final = run_graph(model, rec, task=TASK, settings=GraphSettings(run_seconds=2, step_seconds=75, max_turns=2))
    elapsed = time.perf_counter() - started
    thesis = steps_of(rec, "thesis")[0]
    assert "cut when the run's time budget ran out" in thesis["content"]
    assert final["thesis"].startswith("Pair each") and not final["thesis"].endswith("month.")
    assert "time budget (2 s) ran out" in final["budget_out"] and final["final_answer"] == "The answer is 4."
    assert elapsed < 4.0, elapsed


@pytest.mark.parametrize("reason, agree", [
    ("Both provided a clear and accurate calculation without any errors or contradictions.", True),
    ("There is no conflict between them.", True),
    ("They contradict each other on the total.", False),
    ("No errors, but they disagree on the rounding.", False),
    ("They reach the same answer.", True),
])
def test_the_critic_denying_a_disagreement_counts_as_agreement(reason, agree):
    assert quality.critic_says_agree(reason, False, "Here is a synthesis.") is agree


SHED = [{"text": "[Garden Rules]\n## Tools\nShared tools live in the green shed. The shed combination is 3917, "
                 "and it changes every January.", "relevance": 0.7,
         "source": {"kind": "document", "label": "Garden Rules", "url": "/memory/documents/1/?chunk=c"}}]
SHED_TASK = "What is the combination of the garden's tool shed?"


def test_an_answer_that_ignores_the_sources_line_is_asked_again_from_it_and_kept_only_if_it_uses_it():
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "The garden rules [1].",
                           "answer": sequence("The rules do not give one; ask the gardener.",
                                              "The combination is 3917 [1].")})
    rec = Recorder()
    final = run_graph(model, rec, task=SHED_TASK, memory_search=lambda q, k: SHED)
    assert final["final_answer"] == "The combination is 3917 [1]."
    [answer] = steps_of(rec, "answer")
    assert "answered again from it" in " ".join(answer["data"]["notes"]) and answer["data"]["cited"] == [1]
    asked = [c for c in model.calls if c["kind"] == "answer"][-1]["messages"][-1]["content"]
    assert asked.endswith("cite it by its number, like [1].") and "The team's discussion" not in asked
    assert '[1] "The shed combination is 3917, and it changes every January."' in asked

    # A second answer that does not use the line either: the team's answer stands, and says so.
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "The garden rules [1].",
                           "answer": "The rules do not give one; ask the gardener."})
    final = run_graph(model, rec := Recorder(), task=SHED_TASK, memory_search=lambda q, k: SHED)
    assert final["final_answer"] == ("The rules do not give one; ask the gardener.\n\nWhat the source says [1]: "
                                     '"Shared tools live in the green shed. … '
                                     'The shed combination is 3917, and it changes every January."')
    [answer] = steps_of(rec, "answer")
    assert "the first stands, with the line quoted under it" in " ".join(answer["data"]["notes"])
    assert answer["data"]["cited"] == [1]

    # A past run's line is the team's own earlier words, not evidence: asked again, but not quoted.
    past = [{**SHED[0], "source": {"kind": "run", "run": 3, "label": "run #3"}}]
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "Run #3 [1].",
                           "answer": "The rules do not give one; ask the gardener."})
    final = run_graph(model, rec := Recorder(), task=SHED_TASK, memory_search=lambda q, k: past)
    assert model.kinds().count("answer") == 2
    assert final["final_answer"] == "The rules do not give one; ask the gardener."
    assert " ".join(steps_of(rec, "answer")[0]["data"]["notes"]).endswith("the first stands")

    # The line's words without its number ("it changes every January") is not using it: asked again.
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "The garden rules [1].",
                           "answer": sequence("The combination changes every January, so it is not fixed.",
                                              "It is 3917 [1].")})
    final = run_graph(model, Recorder(), task=SHED_TASK, memory_search=lambda q, k: SHED)
    assert model.kinds().count("answer") == 2 and final["final_answer"] == "It is 3917 [1]."

    # An answer that uses the line, or a weak source (under graph.research_relevance): one answer, no retry.
    for answer, memories in (("It is 3917 [1].", SHED), ("Ask the gardener.", [{**SHED[0], "relevance": 0.4}])):
        model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "The rules [1].",
                               "answer": answer})
        run_graph(model, rec := Recorder(), task=SHED_TASK, memory_search=lambda q, k, m=memories: m)
        assert model.kinds().count("answer") == 1


def test_no_second_answer_from_the_sources_line_once_the_runs_budget_is_spent():
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "The garden rules [1].",
                           "answer": sequence("The rules do not give one.", "The combination is 3917 [1].")})
    rec = Recorder()
    final = run_graph(model, rec, task=SHED_TASK, memory_search=lambda q, k: SHED,
                      settings=GraphSettings(run_tokens=1))  # spent by the first contribution
    assert final["budget_out"] and model.kinds().count("answer") == 1
    # No time to ask again: the line is quoted under the team's answer, so the person still sees it.
    assert final["final_answer"] == ("The rules do not give one.\n\nWhat the source says [1]: "
                                     '"Shared tools live in the green shed. … '
                                     'The shed combination is 3917, and it changes every January."')
    assert "the budget is spent: not asked again, the line is quoted under the answer" in " ".join(
        steps_of(rec, "answer")[0]["data"]["notes"])


def test_a_reply_that_goes_on_to_copy_its_prompts_blocks_is_cut_before_the_copy():
    from personas.graph import prompts

    headers = prompts.BLOCK_HEADERS
    term = ("The autumn term starts on 2027-09-06.\n\nWhere the sources speak to the task:\n"
            "[1] Term Dates: The summer term ends on 2028-07-21.")
    assert quality.cut_prompt_blocks(term, headers) == ("The autumn term starts on 2027-09-06.",
                                                        "Where the sources speak to the task:")
    thesis = ("THESIS\nThe boardwalk is 2.4 km long.\n\n**ROBIN answered:**\nI agree.\n\n"
              "Revise your thesis: keep what holds.\n1. Direct information")
    assert quality.cut_prompt_blocks(thesis, headers) == ("THESIS\nThe boardwalk is 2.4 km long.", "ROBIN answered:")
    # Nothing before the header (the whole reply is the echo: the hollow checks judge it), or no header.
    for text in ("Sources:\n[1] The shed code is 5512.", "Sources: the handbook [1].\nThe code is 5512."):
        assert quality.cut_prompt_blocks(text, headers) == (text, "")
    # Every header is one the prompts really write, as a block of its own.
    source = open(prompts.__file__, encoding="utf-8").read()
    assert all(f"{h}\\n" in source for h in headers), [h for h in headers if f"{h}\\n" not in source]


def test_the_final_answer_is_cut_before_a_copy_of_its_prompt_and_the_step_says_so():
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "The garden rules [1].",
                           "answer": 'It is 3917 [1].\n\nWhere the sources speak to the task:\n[1] "The shed …"'})
    rec = Recorder()
    final = run_graph(model, rec, task=SHED_TASK, memory_search=lambda q, k: SHED)
    assert final["final_answer"] == "It is 3917 [1]."
    [answer] = steps_of(rec, "answer")
    assert "copy its prompt's “Where the sources speak to the task:” block" in " ".join(answer["data"]["notes"])


def test_a_final_answer_preamble_is_dropped_and_an_answer_about_the_final_answer_is_not():
    assert quality.strip_preamble("The final answer for the person who asked is:\n\nPair them.") == (
        "Pair them.", "The final answer for the person who asked is:")
    assert quality.strip_preamble("**Final Answer:** It is 3917.") == ("It is 3917.", "Final Answer:")
    for text in ("My final answer depends on: the rota.", "The final answer is 42.", "Final answer:"):
        assert quality.strip_preamble(text) == (text, "")
    model = ScriptedModel({"answer": "The final answer for the person who asked is:\n\nPair newcomers with mentors."})
    rec = Recorder()
    final = run_graph(model, rec, task=TASK, settings=GraphSettings(max_turns=1))
    assert final["final_answer"] == "Pair newcomers with mentors."
    assert "began with “The final answer for the person who asked is:”" in " ".join(
        steps_of(rec, "answer")[0]["data"]["notes"])


def test_a_discussion_label_copied_before_the_final_answer_is_dropped():
    assert quality.strip_speaker("BRICK: ### Thesis\nThe number is 3917.") == ("### Thesis\nThe number is 3917.",
                                                                              "BRICK")
    assert quality.strip_speaker("**ROBIN:** I agree, it is 3917.") == ("I agree, it is 3917.", "ROBIN")
    for text in ("Brick by brick: the wall is 2 m.", "BRICK:", "The answer is 3917."):
        assert quality.strip_speaker(text) == (text, "")
    model = ScriptedModel({"route": {"research": True, "reason": "r"}, "research": "The garden rules [1].",
                           "answer": "BRICK: The combination is 3917 [1]."})
    rec = Recorder()
    final = run_graph(model, rec, task=SHED_TASK, memory_search=lambda q, k: SHED)
    assert final["final_answer"] == "The combination is 3917 [1]."
    assert "began with “BRICK:”" in " ".join(steps_of(rec, "answer")[0]["data"]["notes"])
