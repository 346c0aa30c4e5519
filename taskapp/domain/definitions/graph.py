"""A workflow's flow as a graph: its stages as nodes, and every way one can follow another as edges.

One pure function of the definition, read by the API (`GET /api/workflows` sends it) and by the
UI (which draws it), so what a team reads and what it sees are the same. The edges follow the
engine's order of decisions after a stage (taskapp.domain.definitions.flow): a loop goes back
while its condition holds and its bound allows, else a route picks the next stage, else `next`
(or the stage after it in the list, or the end).

Nodes: `input` (the run's input), one `stage` per stage, `output` (the run's output).
Edges, by kind:
- `next`: one stage after another (or the input to the first stage, or the last to the output);
- `fan_out`: the same, into a stage that runs once per item of a list (`for_each`); the stage's
  node carries the list's expression and bound, and its output is the list of answers (fan-in);
- `loop`: back to an earlier stage (or the same one) while a condition holds, at most `max` times;
- `route`: to the stage chosen by a value of the output (`value`; `default` for any other value).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from taskapp.domain.definitions.model import StageSpec, WorkflowSpec

INPUT, OUTPUT = "_input", "_output"  # never a stage's name: those start with a letter
NodeKind = Literal["input", "stage", "output"]
EdgeKind = Literal["next", "fan_out", "loop", "route"]


@dataclass(frozen=True)
class FanOut:
    items: str  # JMESPath giving the list
    max_items: int


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    label: str
    agent: str | None = None
    model: str | None = None
    tools: tuple[str, ...] = ()
    fan_out: FanOut | None = None


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind
    label: str
    condition: str | None = None  # a loop's `while`, a route's `on`, a fan-out's `items`
    value: str | None = None  # a route's case
    default: bool = False  # a route's default
    max: int | None = None  # a loop's bound (or a fan-out's max_items)
    max_from: str | None = None  # a loop's lower bound from the run


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"nodes": [asdict(n) for n in self.nodes], "edges": [asdict(e) for e in self.edges]}


def workflow_graph(spec: WorkflowSpec) -> Graph:
    """The graph of a (checked) definition's stages."""
    stages = spec.stages
    nodes = [Node(INPUT, "input", "input")]
    for stage in stages:
        agent = spec.agents.get(stage.agent)
        fan_out = FanOut(stage.for_each.items, stage.for_each.max_items) if stage.for_each else None
        nodes.append(
            Node(
                stage.name,
                "stage",
                stage.name,
                agent=stage.agent,
                model=agent.model if agent else None,
                tools=tuple(agent.tools) if agent else (),
                fan_out=fan_out,
            )
        )
    nodes.append(Node(OUTPUT, "output", "output"))
    by_name = {s.name: s for s in stages}
    edges = [_into(INPUT, stages[0])]
    for i, stage in enumerate(stages):
        if stage.loop is not None:
            edges.append(_loop(stage))
        if stage.route is not None:
            edges += _routes(stage)
        elif stage.next == "end" or (stage.next is None and i == len(stages) - 1):
            edges.append(Edge(stage.name, OUTPUT, "next", ""))
        else:
            edges.append(_into(stage.name, by_name[stage.next] if stage.next else stages[i + 1]))
    return Graph(tuple(nodes), tuple(edges))


def _into(source: str, stage: StageSpec) -> Edge:
    if stage.for_each is None:
        return Edge(source, stage.name, "next", "")
    each = stage.for_each
    return Edge(
        source,
        stage.name,
        "fan_out",
        f"each of {each.items} (at most {each.max_items})",
        condition=each.items,
        max=each.max_items,
    )


def _loop(stage: StageSpec) -> Edge:
    loop = stage.loop
    assert loop is not None
    bound = f"at most min({loop.max}, {loop.max_from})" if loop.max_from else f"at most {loop.max}"
    return Edge(
        stage.name,
        loop.to,
        "loop",
        f"while {loop.while_}, {bound}",
        condition=loop.while_,
        max=loop.max,
        max_from=loop.max_from,
    )


def _routes(stage: StageSpec) -> list[Edge]:
    route = stage.route
    assert route is not None
    edges = [
        Edge(stage.name, target, "route", f"{route.on} = {value}", condition=route.on, value=value)
        for value, target in route.cases.items()
    ]
    if route.default is not None:
        edges.append(Edge(stage.name, route.default, "route", "otherwise", condition=route.on, default=True))
    return edges
