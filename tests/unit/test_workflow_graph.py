"""The graph of a definition (taskapp/domain/definitions/graph.py): one pure function that the API sends
and the UI draws, following the engine's order after a stage (loop, else route, else next)."""

from __future__ import annotations

from pathlib import Path

import yaml

from taskapp.domain.definitions.graph import INPUT, OUTPUT, workflow_graph
from taskapp.domain.definitions.model import WorkflowSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"
AGENT = {"model": "m", "system_prompt": "p", "output_schema": {"type": "object", "properties": {}}}


def _spec(stages: list[dict], agents: dict | None = None) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "w",
            "input_schema": {"type": "object", "properties": {}},
            "agents": agents or {"a": AGENT, "b": {**AGENT, "tools": ["calc"]}},
            "stages": stages,
        }
    )


def _edges(spec: WorkflowSpec) -> list[tuple[str, str, str]]:
    return [(e.source, e.target, e.kind) for e in workflow_graph(spec).edges]


def test_research_is_a_fan_out_then_a_bounded_loop():
    spec = WorkflowSpec.model_validate(yaml.safe_load((EXAMPLES / "research.yaml").read_text()))
    graph = workflow_graph(spec)
    assert [n.id for n in graph.nodes] == [INPUT, "planner", "researcher", "writer", "reviewer", OUTPUT]
    assert _edges(spec) == [
        (INPUT, "planner", "next"),
        ("planner", "researcher", "fan_out"),
        ("researcher", "writer", "next"),
        ("writer", "reviewer", "next"),
        ("reviewer", "writer", "loop"),
        ("reviewer", OUTPUT, "next"),
    ]
    researcher = next(n for n in graph.nodes if n.id == "researcher")
    assert researcher.fan_out is not None and researcher.fan_out.max_items == 4
    assert researcher.model == "gemini-2.5-flash-lite" and researcher.agent == "researcher"
    loop = next(e for e in graph.edges if e.kind == "loop")
    assert (loop.max, loop.max_from, loop.condition) == (10, "input.max_revisions", "!(outputs.reviewer.approved)")
    assert "at most min(10, input.max_revisions)" in loop.label


def test_a_route_replaces_next_and_names_its_values_and_its_default():
    spec = _spec(
        [
            {
                "name": "s1",
                "agent": "a",
                "route": {"on": "outputs.s1.kind", "cases": {"x": "s2", "y": "s3"}, "default": "s4"},
            },
            {"name": "s2", "agent": "b", "next": "s4"},
            {"name": "s3", "agent": "b", "next": "end"},
            {"name": "s4", "agent": "a"},
        ]
    )
    graph = workflow_graph(spec)
    routes = [(e.target, e.value, e.default) for e in graph.edges if e.kind == "route"]
    assert routes == [("s2", "x", False), ("s3", "y", False), ("s4", None, True)]
    assert ("s1", "s2", "next") not in _edges(spec)
    assert ("s2", "s4", "next") in _edges(spec) and ("s3", OUTPUT, "next") in _edges(spec)
    assert ("s4", OUTPUT, "next") in _edges(spec)
    assert next(n for n in graph.nodes if n.id == "s2").tools == ("calc",)
    assert [e.label for e in graph.edges if e.kind == "route"] == [
        "outputs.s1.kind = x",
        "outputs.s1.kind = y",
        "otherwise",
    ]


def test_a_fan_out_reached_by_a_route_stays_a_route_and_a_self_loop_points_at_itself():
    spec = _spec(
        [
            {"name": "s1", "agent": "a", "route": {"on": "outputs.s1.k", "cases": {"x": "s2"}}},
            {
                "name": "s2",
                "agent": "b",
                "for_each": {"items": "input.items", "max_items": 3},
                "loop": {"to": "s2", "while": "`false`", "max": 2},
            },
        ]
    )
    assert _edges(spec) == [(INPUT, "s1", "next"), ("s1", "s2", "route"), ("s2", "s2", "loop"), ("s2", OUTPUT, "next")]
    assert workflow_graph(spec).nodes[2].fan_out is not None


def test_the_graph_is_plain_data_for_json():
    spec = _spec([{"name": "s1", "agent": "a", "for_each": {"items": "input.xs"}}])
    data = workflow_graph(spec).as_dict()
    assert data["edges"][0] == {
        "source": INPUT,
        "target": "s1",
        "kind": "fan_out",
        "label": "each of input.xs (at most 16)",
        "condition": "input.xs",
        "value": None,
        "default": False,
        "max": 16,
        "max_from": None,
    }
    assert data["nodes"][1]["fan_out"] == {"items": "input.xs", "max_items": 16}
    assert list(data["nodes"][1]["tools"]) == []
