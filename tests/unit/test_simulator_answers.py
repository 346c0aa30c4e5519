"""The Gemini simulator's answers are generic: shaped by the schema, flavoured by each task's own
input, and they follow the tool protocol; nothing in them knows a particular agent."""

from __future__ import annotations

import json

from taskapp.catalog.files import load_path
from taskapp.dev.gemini_sim.answers import FakeContext, fake_value
from taskapp.domain.definitions.schemas import is_valid
from taskapp.domain.prompts import batch_schema, build_prompt
from tests.helpers import ROOT

MODELS = ["gemini-2.5-flash", "gemini-2.5-flash-lite"]


def _tool_call(tool: str, arguments: dict) -> dict:
    return {
        "type": "object",
        "properties": {"tool": {"type": "string", "enum": [tool]}, "arguments": arguments},
        "required": ["tool", "arguments"],
    }


LOOKUP = _tool_call(
    "lookup", {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
)
QUOTE = _tool_call(
    "quote",
    {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "reason": {"type": "string", "enum": ["late", "damaged"]}},
        "required": ["order_id", "reason"],
    },
)
OUTPUT = {"type": "object", "properties": {"reply": {"type": "string", "minLength": 1}}, "required": ["reply"]}
# A tool-using agent's batch answer schema, as taskapp.domain.prompts builds it (JSON Schema, lower-case types).
TOOL_BATCH = {
    "type": "object",
    "properties": {
        "answers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "step_id": {"type": "string"},
                    "output": OUTPUT,
                    "tool_calls": {"type": "array", "items": {"anyOf": [LOOKUP, QUOTE]}, "maxItems": 8},
                },
                "required": ["step_id"],
            },
        }
    },
    "required": ["answers"],
}


def _answers(schema: dict, tasks: list[tuple[str, dict]]) -> list[dict]:
    return fake_value(schema, FakeContext.from_prompt(build_prompt(tasks)))["answers"]


def test_a_task_without_tool_results_asks_for_one_tool_call_with_its_own_arguments():
    tasks = [(f"s{i}", {"message": f"where is order {i}", "order_id": f"A-10{i:02d}"}) for i in range(6)]

    answers = _answers(TOOL_BATCH, tasks)

    assert [a["step_id"] for a in answers] == [sid for sid, _ in tasks]
    for answer, (_, payload) in zip(answers, tasks, strict=True):
        assert set(answer) == {"step_id", "tool_calls"} and len(answer["tool_calls"]) == 1
        call = answer["tool_calls"][0]
        assert call["tool"] in ("lookup", "quote")
        assert call["arguments"]["order_id"] == payload["order_id"]  # an identifier is copied, as a model would
        assert is_valid(LOOKUP if call["tool"] == "lookup" else QUOTE, call)
    assert {a["tool_calls"][0]["tool"] for a in answers} == {"lookup", "quote"}  # a seeded choice, not always the first


def test_a_task_with_tool_results_answers_with_its_output():
    tasks = [
        ("done", {"message": "refund please", "tool_results": [{"tool": "quote", "arguments": {}, "result": 3}]}),
        ("fresh", {"message": "refund please too"}),
    ]

    done, fresh = _answers(TOOL_BATCH, tasks)

    assert set(done) == {"step_id", "output"} and is_valid(OUTPUT, done["output"])
    assert "refund please" in done["output"]["reply"]
    assert set(fresh) == {"step_id", "tool_calls"}


def test_answers_are_deterministic_per_prompt_and_one_per_step_id():
    tasks = [(f"id-{i}", {"text": f"text number {i}"}) for i in range(5)]
    plain = {
        "type": "object",
        "properties": {
            "answers": {
                "type": "array",
                "items": {"type": "object", "properties": {"step_id": {"type": "string"}, "output": OUTPUT}},
            }
        },
    }

    first, again = _answers(plain, tasks), _answers(plain, tasks)

    assert first == again and [a["step_id"] for a in first] == [sid for sid, _ in tasks]
    for answer, (_, payload) in zip(first, tasks, strict=True):
        assert payload["text"] in answer["output"]["reply"]  # each about its own task


def test_texts_and_booleans_know_no_agent():
    """Fields the old built-in agents had get the same kind of text as any other, and a boolean
    called `approved` is a coin like any other boolean."""
    schema = {
        "type": "object",
        "properties": {
            "findings": {"type": "string"},
            "sub_question": {"type": "string"},
            "colour_notes": {"type": "string"},
            "approved": {"type": "boolean"},
        },
    }
    values = [fake_value(schema, FakeContext.from_prompt(f"prompt {i}")) for i in range(400)]

    for value in values[:20]:
        for name, label in (
            ("findings", "Findings"),
            ("sub_question", "Sub question"),
            ("colour_notes", "Colour notes"),
        ):
            assert value[name].startswith(f"{label} on 'prompt ")
    assert 0.42 < sum(v["approved"] for v in values) / len(values) < 0.58


def test_every_shipped_example_agent_gets_answers_its_schema_accepts():
    """Through taskapp.domain.prompts' own batch schema, for every agent of examples/workflows."""
    definitions = load_path(str(ROOT / "examples" / "workflows"), models=MODELS)
    tasks = [("a", {"message": "my order A-1001 is late", "order_id": "A-1001", "question": "why?", "text": "t"})]
    for definition in definitions:
        for agent in definition.agents.values():
            schema = batch_schema(agent)
            assert isinstance(schema, dict) and json.dumps(schema)  # JSON Schema, as responseJsonSchema sends it
            answers = fake_value(schema, FakeContext.from_prompt(build_prompt(tasks)))["answers"]
            assert len(answers) == 1 and is_valid(schema, {"answers": answers}), (definition.name, agent.name)
            if agent.tools:
                assert answers[0]["tool_calls"][0]["tool"] in {t.name for t in agent.tools}
            else:
                assert is_valid(agent.output_schema, answers[0]["output"]), (definition.name, agent.name)
