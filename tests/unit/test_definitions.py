"""Workflow definitions on their own: every construct of the flow, and every way a definition is refused."""

from __future__ import annotations

import copy
import json

import pytest

from taskapp.domain.agents import ToolSpec
from taskapp.domain.definitions.checks import DefinitionError
from taskapp.domain.definitions.flow import DefinedWorkflow
from taskapp.domain.definitions.model import definition_json_schema
from taskapp.domain.engine import Limits, StepState, decide
from taskapp.domain.prompts import batch_schema, parse_answers, system_instruction
from tests.helpers import check, example

OBJ = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
TOOL = ToolSpec(
    "lookup",
    "Look a word up.",
    {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    timeout_s=2,
)


def agent(schema=None, **extra):
    return {"model": "gemini-2.5-flash-lite", "system_prompt": "Do it.", "output_schema": schema or OBJ, **extra}


def triage() -> dict:
    """classifier -> (billing | tech | general) -> reviewer: routing, with one specialist using a tool."""
    category = {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": ["billing", "tech", "other"]}},
        "required": ["category"],
    }
    return {
        "name": "triage",
        "input_schema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
        "agents": {
            "classifier": agent(category),
            "billing": agent(),
            "tech": agent(tools=["lookup"], max_tool_rounds=2),
            "general": agent(),
            "reviewer": agent(),
        },
        "stages": [
            {"name": "classify", "agent": "classifier", "input": {"message": "input.message"}},
            {
                "name": "billing",
                "agent": "billing",
                "input": {"message": "input.message"},
                "next": "review",
            },
            {"name": "tech", "agent": "tech", "input": {"message": "input.message"}, "next": "review"},
            {"name": "general", "agent": "general", "input": {"message": "input.message"}},
            {
                "name": "review",
                "agent": "reviewer",
                "input": {"answer": "outputs.billing.text || outputs.tech.text || outputs.general.text"},
            },
        ],
        "output": {"from": {"reply": "outputs.review.text", "category": "outputs.classify.category"}},
    }


def routed(document: dict, default: str | None = "general") -> dict:
    document = copy.deepcopy(document)
    route = {"on": "outputs.classify.category", "cases": {"billing": "billing", "tech": "tech"}}
    if default:
        route["default"] = default
    document["stages"][0]["route"] = route
    return document


class Run:
    """A run's steps, finished as a fake model or tool answers them (what the pipeline stores)."""

    def __init__(self, workflow: DefinedWorkflow, run_input: dict, limits: Limits | None = None) -> None:
        self.workflow, self.input, self.limits = workflow, run_input, limits or Limits()
        self.steps: list[StepState] = []

    def decide(self):
        return decide(self.workflow, self.input, self.steps, self.limits)

    def answer(self, decision, output_of) -> None:
        for new in decision.new_steps:
            self.steps.append(
                StepState(
                    len(self.steps) + 1,
                    new.agent,
                    "succeeded",
                    new.input,
                    output_of(new),
                    None,
                    10,
                    new.handoff,
                    new.stage,
                    new.kind,
                    new.item,
                )
            )


def test_routing_hands_off_to_the_stage_its_value_names_then_follows_next():
    run = Run(DefinedWorkflow(check(routed(triage()), tools={"lookup": TOOL})), {"message": "my invoice"})
    first = run.decide()
    assert [(n.stage, n.agent) for n in first.new_steps] == [("classify", "classifier")]
    run.answer(first, lambda n: {"category": "billing"})
    routed_to = run.decide()
    (step,) = routed_to.new_steps
    assert (step.stage, step.handoff) == ("billing", True)  # a route counts against the handoff depth
    run.answer(routed_to, lambda n: {"text": "refunded"})
    review = run.decide()
    assert review.new_steps[0].stage == "review" and review.new_steps[0].input == {"answer": "refunded"}
    run.answer(review, lambda n: {"text": "Dear customer: refunded"})
    assert run.decide().output == {"reply": "Dear customer: refunded", "category": "billing"}


def test_a_value_without_a_case_takes_the_default_or_fails_the_run_saying_so():
    run = Run(DefinedWorkflow(check(routed(triage()), tools={"lookup": TOOL})), {"message": "hi"})
    run.answer(run.decide(), lambda n: {"category": "other"})
    assert run.decide().new_steps[0].stage == "general"
    strict = Run(DefinedWorkflow(check(routed(triage(), default=None), tools={"lookup": TOOL})), {"message": "hi"})
    strict.answer(strict.decide(), lambda n: {"category": "other"})
    assert "no route for 'other'" in strict.decide().failure


def test_routing_depth_is_a_kill_switch():
    run = Run(
        DefinedWorkflow(check(routed(triage()), tools={"lookup": TOOL})),
        {"message": "x"},
        Limits(max_handoff_depth=0),
    )
    run.answer(run.decide(), lambda n: {"category": "tech"})
    assert run.decide().failure.startswith("routing_exhausted")


def test_a_tool_call_is_a_step_and_its_result_goes_back_to_the_agent():
    run = Run(DefinedWorkflow(check(routed(triage()), tools={"lookup": TOOL})), {"message": "error 42"})
    run.answer(run.decide(), lambda n: {"category": "tech"})
    ask = run.decide()
    run.answer(
        ask,
        lambda n: {
            "tool_calls": [
                {"tool": "lookup", "arguments": {"word": "42"}},
                {"tool": "lookup", "arguments": {"word": "x"}},
            ]
        },
    )
    tools = run.decide()
    assert [(n.kind, n.agent, n.stage, n.input["arguments"]) for n in tools.new_steps] == [
        ("tool", "lookup", "tech", {"word": "42"}),
        ("tool", "lookup", "tech", {"word": "x"}),
    ]
    outputs = iter([{"result": "the answer"}, {"error": "timeout: lookup took over 2s"}])
    run.answer(tools, lambda n: next(outputs))
    again = run.decide()
    (step,) = again.new_steps
    assert step.kind == "agent" and step.agent == "tech" and step.input["message"] == "error 42"
    assert step.input["tool_results"] == [
        {"tool": "lookup", "arguments": {"word": "42"}, "result": "the answer"},
        {"tool": "lookup", "arguments": {"word": "x"}, "error": "timeout: lookup took over 2s"},
    ]
    run.answer(again, lambda n: {"text": "fixed"})
    assert run.decide().new_steps[0].stage == "review"  # the stage's answer, then its `next`


def test_an_agent_that_keeps_asking_for_tools_fails_after_max_tool_rounds():
    run = Run(DefinedWorkflow(check(routed(triage()), tools={"lookup": TOOL})), {"message": "x"})
    run.answer(run.decide(), lambda n: {"category": "tech"})
    asking = {"tool_calls": [{"tool": "lookup", "arguments": {"word": "w"}}]}
    for _ in range(3):
        decision = run.decide()
        assert decision.new_steps, decision
        run.answer(decision, lambda n: asking if n.kind == "agent" else {"result": 1})
        run.answer(run.decide(), lambda n: {"result": 1})
    assert "max_tool_rounds" in run.decide().failure


def test_fan_out_runs_one_step_per_item_up_to_max_items_and_fans_in_as_a_list():
    run = Run(DefinedWorkflow(example("research")), {"question": "why?", "max_revisions": 0})
    run.answer(run.decide(), lambda n: {"sub_questions": [f"q{i}" for i in range(6)]})
    fan = run.decide()
    assert [n.input["sub_question"] for n in fan.new_steps] == ["q0", "q1", "q2", "q3"]  # max_items: 4
    assert [n.item for n in fan.new_steps] == [0, 1, 2, 3]
    run.answer(fan, lambda n: {"findings": "about " + n.input["sub_question"]})
    writer = run.decide().new_steps[0]
    assert writer.input["findings"] == ["about q0", "about q1", "about q2", "about q3"]
    assert "previous_draft" not in writer.input  # a mapping's null fields are left out


def test_a_loop_goes_back_while_its_condition_holds_at_most_its_bound():
    run = Run(DefinedWorkflow(example("research")), {"question": "why?", "max_revisions": 2})
    run.answer(run.decide(), lambda n: {"sub_questions": ["a"]})
    run.answer(run.decide(), lambda n: {"findings": "f"})
    drafts = 0
    while True:
        decision = run.decide()
        if decision.finished:
            break
        drafts += decision.new_steps[0].agent == "writer"
        run.answer(
            decision,
            lambda n, drafts=drafts: (
                {"title": "T", "draft": f"D{drafts}"}
                if n.agent == "writer"
                else {"approved": False, "feedback": "more"}
            ),
        )
    assert drafts == 3 and decision.output["revisions"] == 2 and decision.output["approved"] is False
    assert decision.output["answer"] == "D3"


def test_the_same_steps_always_decide_the_same_thing():
    run = Run(DefinedWorkflow(example("research")), {"question": "why?", "max_revisions": 1})
    run.answer(run.decide(), lambda n: {"sub_questions": ["a", "b"]})
    assert (
        run.decide()
        == run.decide()
        == decide(DefinedWorkflow(example("research")), run.input, list(run.steps), Limits())
    )


def test_an_output_that_fails_the_output_schema_fails_the_run_with_the_path():
    document = {
        "name": "strict",
        "input_schema": OBJ,
        "agents": {"a": agent()},
        "stages": [{"name": "only", "agent": "a"}],
        "output": {
            "from": {"n": "outputs.only.text"},
            "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
        },
    }
    run = Run(DefinedWorkflow(check(document)), {"text": "x"})
    run.answer(run.decide(), lambda n: {"text": "not a number"})
    assert "output schema" in run.decide().failure and "n:" in run.decide().failure


def test_an_empty_fan_out_fails_the_run_saying_which_stage():
    run = Run(DefinedWorkflow(example("research")), {"question": "why?"})
    run.answer(run.decide(), lambda n: {"sub_questions": []})
    assert "stage researcher: for_each.items gave an empty list" in run.decide().failure


# -- refusals: each names the path inside the definition and the reason ---------------------


def problems(document: dict, **kwargs) -> dict[str, str]:
    with pytest.raises(DefinitionError) as caught:
        check(document, **kwargs)
    return {p.path: p.reason for p in caught.value.problems}


def _without_tools(document: dict) -> dict:
    return {k: copy.deepcopy(v) for k, v in document.items() if k != "tools"}


@pytest.mark.parametrize(
    "change, path, reason",
    [
        (lambda d: d["stages"][1].update(agent="nobody"), "stages.1.agent", "no agent 'nobody'"),
        (
            lambda d: d["stages"][2].update(next="planner"),
            "stages.2.next",
            "only a loop, which has a bound, may go back",
        ),
        (
            lambda d: d["stages"][0].update(loop={"to": "writer", "while": "`true`", "max": 2}),
            "stages.0.loop.to",
            "a loop goes back",
        ),
        (lambda d: d["stages"][3]["loop"].pop("max"), "stages.3.loop.max", "Field required"),
        (
            lambda d: d["agents"]["planner"]["output_schema"]["properties"].update(x={"not": {"type": "string"}}),
            "agents.planner.output_schema.properties.x.not",
            "does not accept the keyword 'not'",
        ),
        (
            lambda d: d["agents"]["planner"].update(output_schema={"type": "array", "items": {"type": "string"}}),
            "agents.planner.output_schema",
            "must be an object schema",
        ),
        (
            lambda d: d["agents"]["planner"].update(
                output_schema={"type": "object", "properties": {"a": {"type": "strin"}}}
            ),
            "agents.planner.output_schema.properties.a.type",
            "not a valid JSON Schema",
        ),
        (
            lambda d: d["stages"][2]["input"].update(question="outputs.planner.nope"),
            "stages.2.input.question",
            "has no field 'nope'",
        ),
        (
            lambda d: d["stages"][2]["input"].update(question="input.nope"),
            "stages.2.input.question",
            "has no field 'nope'",
        ),
        (
            lambda d: d["stages"][2]["input"].update(question="outputs.ghost.x"),
            "stages.2.input.question",
            "has no field 'ghost'",
        ),
        (
            lambda d: d["stages"][2]["input"].update(question="outputs.researcher.findings"),
            "stages.2.input.question",
            "is a list",
        ),
        (
            lambda d: d["stages"][3]["loop"].update({"while": "!outputs.reviewer.approved"}),
            "stages.3.loop.while",
            "'!' binds tighter",
        ),
        (lambda d: d["stages"][0]["input"].update(question="item"), "stages.0.input.question", "has no field 'item'"),
        (
            lambda d: d["stages"][0]["input"].update(question="input.question["),
            "stages.0.input.question",
            "not a valid JMESPath",
        ),
        (
            lambda d: d["stages"][0]["input"].update(question="nosuch(input.question)"),
            "stages.0.input.question",
            "unknown function",
        ),
        (
            lambda d: d["agents"]["planner"].update(system_prompt="x" * 20_001),
            "agents.planner.system_prompt",
            "at most 20000",
        ),
        (
            lambda d: d["agents"]["planner"].update(tools=["shell"]),
            "agents.planner.tools.0",
            "no tool 'shell' is registered",
        ),
        (
            lambda d: d["agents"]["planner"].update(batch={"across_teams": True}),
            "agents.planner.batch.across_teams",
            "only a deployer's",
        ),
        (lambda d: d["agents"]["planner"].update(model="gemini-9-ultra"), "agents.planner.model", "is not served here"),
        (lambda d: d.update(input_schema={"type": "string"}), "input_schema", "must be an object schema"),
        (lambda d: d["stages"].append({"name": "planner", "agent": "planner"}), "stages.4.name", "comes earlier"),
        (lambda d: d.update(name="Bad Name"), "name", "String should match pattern"),
    ],
)
def test_a_bad_definition_is_refused_naming_the_path_and_the_reason(change, path, reason):
    document = _without_tools(example("research").document)
    change(document)
    found = problems(document)
    assert path in found, found
    assert reason in found[path], found


def test_every_problem_is_reported_at_once():
    document = _without_tools(example("research").document)
    document["agents"]["planner"]["model"] = "nope"
    document["agents"]["writer"]["tools"] = ["missing"]
    assert {"agents.planner.model", "agents.writer.tools.0"} <= set(problems(document))


def test_a_deployers_shared_agent_may_batch_across_teams():
    document = _without_tools(example("summarize").document)
    document["agents"]["summarizer"]["batch"] = {"across_teams": True}
    assert check(document, shared=True).agents["summarizer"].batch.across_teams


def test_an_agent_with_tools_cannot_name_an_output_field_tool_calls():
    document = routed(triage())
    document["agents"]["tech"]["output_schema"] = {"type": "object", "properties": {"tool_calls": {"type": "string"}}}
    assert (
        "cannot have an output field named 'tool_calls'"
        in problems(document, tools={"lookup": TOOL})["agents.tech.output_schema.properties.tool_calls"]
    )


def test_the_definition_schema_is_a_json_schema_editors_can_use():
    from jsonschema import Draft202012Validator

    schema = definition_json_schema()
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema).validate(json.loads(json.dumps(_without_tools(example("research").document))))


def test_the_same_content_has_the_same_hash_and_any_change_another():
    first, again = (
        check(_without_tools(example("summarize").document)),
        check(_without_tools(example("summarize").document)),
    )
    assert first.content_hash == again.content_hash
    changed = _without_tools(example("summarize").document)
    changed["agents"]["summarizer"]["temperature"] = 0.3
    assert check(changed).content_hash != first.content_hash
    assert check(changed).agents["summarizer"].id != first.agents["summarizer"].id  # another agent version


# -- the tool protocol in the prompt and the answers ---------------------------------------


def test_a_tool_using_agents_answer_is_its_output_or_tool_calls_never_both():
    tech = check(routed(triage()), tools={"lookup": TOOL}).agents["tech"]
    schema = batch_schema(tech)
    item = schema["properties"]["answers"]["items"]
    assert item["required"] == ["step_id"] and item["properties"]["tool_calls"]["items"]["properties"]["tool"][
        "enum"
    ] == ["lookup"]
    assert "lookup" in system_instruction(tech)
    text = json.dumps(
        {
            "answers": [
                {"step_id": "a", "tool_calls": [{"tool": "lookup", "arguments": {"word": "w"}}]},
                {"step_id": "b", "output": {"text": "done"}},
                {"step_id": "c", "tool_calls": [{"tool": "rm_rf", "arguments": {}}]},
                {"step_id": "d", "output": {"text": "x"}, "tool_calls": [{"tool": "lookup", "arguments": {}}]},
            ]
        }
    )
    got = parse_answers(text, tech, ["a", "b", "c", "d"])
    assert got["a"].output == {"tool_calls": [{"tool": "lookup", "arguments": {"word": "w"}}]}
    assert got["b"].output == {"text": "done"}
    assert "not one of tech's tools" in got["c"].error
    assert "both" in got["d"].error
