"""Turning a definition document into a checked `Definition`, or every reason it is not one.

One pass collects all problems (each with its path inside the document) so a team fixing
a file sees them at once, from `taskapp workflows validate`, a 422 of the API, or a web or
worker process that refuses to start on a bad file.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from taskapp.domain.agents import Agent, BatchOptions, ToolSpec
from taskapp.domain.definitions.expressions import ANY, ExpressionError, schema_of
from taskapp.domain.definitions.model import StageSpec, WorkflowSpec
from taskapp.domain.definitions.schemas import Problem, gemini_problems, schema_problems

RESERVED_OUTPUT_FIELD = "tool_calls"  # how a tool-using agent's step records that it asked for tools


class DefinitionError(ValueError):
    """A definition that cannot be used: `problems` says every reason, each with its path."""

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(f"{p.path or '(top)'}: {p.reason}" for p in problems))


@dataclass(frozen=True, eq=False)
class Definition:
    """A checked workflow definition, ready for the engine (taskapp.domain.definitions.flow)."""

    spec: WorkflowSpec
    agents: dict[str, Agent]
    tools: dict[str, ToolSpec]
    document: dict[str, Any]  # the normalised document, as stored (with the tools it uses)
    content_hash: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.spec.input_schema

    def stage_index(self, name: str) -> int:
        return next(i for i, s in enumerate(self.spec.stages) if s.name == name)

    def stage(self, name: str) -> StageSpec:
        return self.spec.stages[self.stage_index(name)]

    def agent_of(self, stage: StageSpec) -> Agent:
        return self.agents[stage.agent]

    @property
    def first_agent(self) -> Agent:
        return self.agents[self.spec.stages[0].agent]


def check_definition(
    document: Any,
    *,
    models: Collection[str],
    tools: Mapping[str, ToolSpec],
    shared: bool,
    source: str | None = None,
) -> Definition:
    """The checked definition, or DefinitionError with every problem found.

    `models`: the models this deployment serves (each has a queue and a quota). `tools`: the
    registered tools. `shared`: a deployer's file (may batch across teams), not a team's upload.
    """
    if not isinstance(document, dict):
        raise DefinitionError([Problem("", "a definition is an object (a mapping)")], source)
    try:
        spec = WorkflowSpec.model_validate(document)
    except ValidationError as exc:
        raise DefinitionError([Problem(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()], source) from None
    problems: list[Problem] = []
    problems += _check_schemas(spec)
    problems += _check_agents(spec, models, tools, shared)
    schemas_ok = not any(
        p.path.endswith("_schema") or "_schema." in p.path or p.path.startswith("output.schema") for p in problems
    )
    problems += _check_stages(spec, expressions=schemas_ok)  # expressions are read against the schemas
    if problems:
        raise DefinitionError(problems, source)
    used = {t: tools[t] for a in spec.agents.values() for t in a.tools}
    return build(spec, used)


def load_stored(document: dict[str, Any]) -> Definition:
    """A stored version, as it was checked when it was stored (the tools it snapshotted, no
    re-check against today's registry or models: a version in use never changes)."""
    body = dict(document)
    tools = {name: ToolSpec.from_dict(t) for name, t in (body.pop("tools", None) or {}).items()}
    return build(WorkflowSpec.model_validate(body), tools)


def build(spec: WorkflowSpec, tools: dict[str, ToolSpec]) -> Definition:
    agents = {
        name: Agent(
            name=name,
            model=a.model,
            system_prompt=a.system_prompt,
            output_schema=a.output_schema,
            temperature=a.temperature,
            max_output_tokens=a.max_output_tokens,
            description=a.description,
            tools=tuple(tools[t] for t in a.tools),
            max_tool_rounds=a.max_tool_rounds,
            batch=BatchOptions(a.batch.max_size, a.batch.max_wait_ms, a.batch.across_teams),
        )
        for name, a in spec.agents.items()
    }
    document = spec.model_dump(mode="json", by_alias=True)
    document["tools"] = {name: t.as_dict() for name, t in sorted(tools.items())}
    digest = hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return Definition(spec=spec, agents=agents, tools=tools, document=document, content_hash=digest)


def _check_schemas(spec: WorkflowSpec) -> list[Problem]:
    problems = schema_problems(spec.input_schema, "input_schema")
    if not problems and (
        str(spec.input_schema.get("type", "")).lower() != "object"
        or not isinstance(spec.input_schema.get("properties"), dict)
    ):
        problems.append(Problem("input_schema", "must be an object schema with properties (type: object)"))
    if spec.output.schema_ is not None:
        problems += schema_problems(spec.output.schema_, "output.schema")
    return problems


def _check_agents(
    spec: WorkflowSpec, models: Collection[str], tools: Mapping[str, ToolSpec], shared: bool
) -> list[Problem]:
    problems: list[Problem] = []
    for name, agent in spec.agents.items():
        here = f"agents.{name}"
        if agent.model not in models:
            served = ", ".join(sorted(models)) or "none"
            problems.append(Problem(f"{here}.model", f"model {agent.model!r} is not served here (served: {served})"))
        problems += gemini_problems(agent.output_schema, f"{here}.output_schema")
        for i, tool in enumerate(agent.tools):
            if tool not in tools:
                known = ", ".join(sorted(tools)) or "none are registered"
                problems.append(Problem(f"{here}.tools.{i}", f"no tool {tool!r} is registered ({known})"))
        if agent.tools and RESERVED_OUTPUT_FIELD in (agent.output_schema.get("properties") or {}):
            problems.append(
                Problem(
                    f"{here}.output_schema.properties.{RESERVED_OUTPUT_FIELD}",
                    f"an agent with tools cannot have an output field named {RESERVED_OUTPUT_FIELD!r}",
                )
            )
        if agent.batch.across_teams and not shared:
            problems.append(
                Problem(f"{here}.batch.across_teams", "only a deployer's shared workflow may batch across teams")
            )
    return problems


def _check_stages(spec: WorkflowSpec, *, expressions: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    names = [s.name for s in spec.stages]
    index = {n: i for i, n in enumerate(names)}
    for i, name in enumerate(names):
        if names.index(name) != i:
            problems.append(Problem(f"stages.{i}.name", f"a stage called {name!r} comes earlier"))
    if "end" in index:
        problems.append(Problem(f"stages.{index['end']}.name", "'end' is reserved for 'next: end'"))
    known_agents = ", ".join(sorted(spec.agents))
    for i, stage in enumerate(spec.stages):
        here = f"stages.{i}"
        if stage.agent not in spec.agents:
            problems.append(Problem(f"{here}.agent", f"no agent {stage.agent!r} in agents ({known_agents})"))
        if stage.next not in (None, "end"):
            problems += _forward(index, i, stage.next, f"{here}.next")
        if stage.route is not None:
            targets = [(f"{here}.route.cases.{v}", t) for v, t in stage.route.cases.items()]
            if stage.route.default is not None:
                targets.append((f"{here}.route.default", stage.route.default))
            for path, target in targets:
                problems += _forward(index, i, target, path)
        if stage.loop is not None:
            back = index.get(stage.loop.to)
            if back is None:
                problems.append(Problem(f"{here}.loop.to", f"no stage {stage.loop.to!r}"))
            elif back > i:
                problems.append(Problem(f"{here}.loop.to", "a loop goes back: name this stage or an earlier one"))
    if problems or not expressions:
        return problems
    return _check_expressions(spec)


def _forward(index: dict[str, int], i: int, target: str, path: str) -> list[Problem]:
    if target not in index:
        return [Problem(path, f"no stage {target!r}")]
    if index[target] <= i:
        return [Problem(path, "must name a later stage: only a loop, which has a bound, may go back")]
    return []


def _check_expressions(spec: WorkflowSpec) -> list[Problem]:
    problems: list[Problem] = []
    base = _context_schema(spec)
    for i, stage in enumerate(spec.stages):
        here = f"stages.{i}"
        context = base
        if stage.for_each is not None:
            items = _schema(stage.for_each.items, base, f"{here}.for_each.items", problems)
            if items is not None and items.get("type") not in (None, "array") and items != ANY:
                problems.append(Problem(f"{here}.for_each.items", "must give a list"))
                items = None
            context = copy.deepcopy(base)
            context["properties"]["item"] = (items or {}).get("items", ANY) if items else ANY
            context["properties"]["index"] = {"type": "integer"}
        problems += _check_mapping(stage.input, context, f"{here}.input")
        if stage.loop is not None:
            _schema(stage.loop.while_, base, f"{here}.loop.while", problems)
            if stage.loop.max_from is not None:
                _schema(stage.loop.max_from, base, f"{here}.loop.max_from", problems)
        if stage.route is not None:
            _schema(stage.route.on, base, f"{here}.route.on", problems)
    problems += _check_mapping(spec.output.from_, base, "output.from")
    return problems


def _check_mapping(value: str | dict[str, str] | None, context: dict[str, Any], path: str) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(value, str):
        _schema(value, context, path, problems)
    elif isinstance(value, dict):
        for key, expression in value.items():
            _schema(expression, context, f"{path}.{key}", problems)
    return problems


def _schema(expression: str, context: dict[str, Any], path: str, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        return schema_of(expression, context)
    except ExpressionError as exc:
        problems.append(Problem(path, f"{exc} (in {expression!r})"))
        return None


def _context_schema(spec: WorkflowSpec) -> dict[str, Any]:
    """What an expression may read, as one JSON Schema (item/index are added inside a fan-out)."""
    outputs: dict[str, Any] = {}
    for stage in spec.stages:
        agent = spec.agents.get(stage.agent)
        out = _inline_refs(agent.output_schema) if agent else ANY
        outputs[stage.name] = {"type": "array", "items": out} if stage.for_each else out
    counts = {s.name: {"type": "integer"} for s in spec.stages}
    return {
        "type": "object",
        "properties": {
            "input": _inline_refs(spec.input_schema),
            "outputs": {"type": "object", "properties": outputs, "additionalProperties": False},
            "loops": {"type": "object", "properties": counts, "additionalProperties": False},
            "visits": {"type": "object", "properties": counts, "additionalProperties": False},
        },
        "additionalProperties": False,
    }


def _inline_refs(schema: dict[str, Any], defs: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """The schema with its local $refs replaced by what they name (a recursive one becomes ANY)."""
    if defs is None:
        defs = {**schema.get("$defs", {}), **schema.get("definitions", {})}
    if depth > 16:
        return ANY
    if isinstance(schema, dict):
        if "$ref" in schema:
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            return _inline_refs(defs[name], defs, depth + 1) if name in defs else ANY
        return {k: _inline_refs(v, defs, depth + 1) for k, v in schema.items() if k not in ("$defs", "definitions")}
    if isinstance(schema, list):
        return [_inline_refs(v, defs, depth + 1) for v in schema]
    return schema
