"""The engine of a defined workflow: what happens next, from the definition, the input and the steps.

A pure function of its arguments, like every workflow's `next` (taskapp.domain.engine wraps
the kill switches around it), so a redelivered message decides the same thing. Nothing is
kept between decisions: the steps so far are replayed into *visits* (one pass through a
stage; a loop makes another) and *threads* (one per fan-out item: the agent's step, the tool
calls it asked for, the agent again with their results, until it answers).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskapp.domain.agents import Agent
from taskapp.domain.definitions.checks import RESERVED_OUTPUT_FIELD, Definition
from taskapp.domain.definitions.expressions import ExpressionError, evaluate, truthy
from taskapp.domain.definitions.model import StageSpec
from taskapp.domain.definitions.schemas import validation_errors
from taskapp.domain.engine import Decision, Limits, NewStep, StepState

AGENT_STEP, TOOL_STEP = "agent", "tool"
TOOL_RESULTS = "tool_results"  # the key of an agent's input that carries its tool calls' results


class _Stop(Exception):
    """The run cannot go on: the decision is this failure."""


@dataclass
class _Thread:
    item: int
    steps: list[StepState] = field(default_factory=list)

    def asked_for_tools(self, step: StepState) -> bool:
        return step.kind == AGENT_STEP and isinstance(step.output, dict) and RESERVED_OUTPUT_FIELD in step.output

    @property
    def done(self) -> bool:
        last = self.steps[-1]
        return last.kind == AGENT_STEP and not self.asked_for_tools(last)

    @property
    def output(self) -> dict[str, Any]:
        return dict(self.steps[-1].output or {})

    @property
    def tool_rounds(self) -> int:
        return sum(1 for s in self.steps if self.asked_for_tools(s))

    def tool_results(self) -> list[dict[str, Any]]:
        results = []
        for step in self.steps:
            if step.kind == TOOL_STEP:
                out = step.output or {}
                entry = {"tool": step.agent, "arguments": step.input.get("arguments", {})}
                entry.update({"error": out["error"]} if "error" in out else {"result": out.get("result")})
                results.append(entry)
        return results


@dataclass
class _Visit:
    stage: str
    threads: dict[int, _Thread] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return bool(self.threads) and all(t.done for t in self.threads.values())

    def output(self, stage: StageSpec) -> Any:
        ordered = [self.threads[i].output for i in sorted(self.threads)]
        return ordered if stage.for_each is not None else ordered[0]


def replay(steps: Sequence[StepState]) -> list[_Visit]:
    """The steps as visits of stages, each with its threads. A step without a stage (stored
    before stages were recorded) is its agent's stage, each such step a thread of its own."""
    visits: list[_Visit] = []
    for step in sorted(steps, key=lambda s: s.seq):
        stage = step.stage or step.agent
        current = visits[-1] if visits else None
        item = step.item
        if item is None:
            item = len(current.threads) if current and current.stage == stage else 0
        thread = current.threads.get(item) if current and current.stage == stage else None
        if (
            current is None
            or current.stage != stage
            or (step.kind == AGENT_STEP and thread is not None and thread.done)
        ):
            current = _Visit(stage)
            visits.append(current)
            thread = None
        if thread is None:
            thread = current.threads[item] = _Thread(item)
        thread.steps.append(step)
    return visits


@dataclass(frozen=True, eq=False)
class DefinedWorkflow:
    """A `Workflow` (taskapp.domain.engine) made from a checked definition."""

    definition: Definition

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def description(self) -> str:
        return self.definition.spec.description

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.definition.input_schema

    @property
    def agents(self) -> tuple[str, ...]:
        """The first is the agent of every run's first step."""
        first = self.definition.spec.stages[0].agent
        return (first, *(a for a in self.definition.agents if a != first))

    def next(self, run_input: dict[str, Any], steps: Sequence[StepState], limits: Limits) -> Decision:
        try:
            return self._next(run_input, steps)
        except _Stop as stop:
            return Decision(failure=str(stop))

    def _next(self, run_input: dict[str, Any], steps: Sequence[StepState]) -> Decision:
        stages = self.definition.spec.stages
        if not steps:
            return self._enter(0, self._context(run_input, []), handoff=False)
        visits = replay(steps)
        current = visits[-1]
        if current.stage not in {s.name for s in stages}:
            raise _Stop(f"workflow {self.name} has no stage {current.stage!r} (the run's steps name it)")
        stage = self.definition.stage(current.stage)
        agent = self.definition.agent_of(stage)
        work = [n for thread in current.threads.values() for n in self._thread_moves(stage, agent, thread)]
        if work:
            return Decision(new_steps=tuple(work))
        return self._after(self.definition.stage_index(stage.name), self._context(run_input, visits))

    # -- within a visit: tools ------------------------------------------------------------

    def _thread_moves(self, stage: StageSpec, agent: Agent, thread: _Thread) -> list[NewStep]:
        last = thread.steps[-1]
        if thread.done:
            return []
        if last.kind == AGENT_STEP:  # it asked for tools: one step per call
            if thread.tool_rounds > agent.max_tool_rounds:
                raise _Stop(
                    f"stage {stage.name}: {agent.name} asked for tools more than {agent.max_tool_rounds} "
                    "times (max_tool_rounds) without answering"
                )
            calls = (last.output or {}).get(RESERVED_OUTPUT_FIELD) or []
            return [
                NewStep(
                    str(call.get("tool")),
                    {"tool": call.get("tool"), "arguments": call.get("arguments") or {}, "asked_by": last.seq},
                    stage=stage.name,
                    kind=TOOL_STEP,
                    item=thread.item,
                )
                for call in calls
            ]
        first = thread.steps[0].input
        again = {k: v for k, v in first.items() if k != TOOL_RESULTS}
        again[TOOL_RESULTS] = thread.tool_results()
        return [NewStep(agent.name, again, stage=stage.name, kind=AGENT_STEP, item=thread.item)]

    # -- between visits: loops, routes, next, the end ---------------------------------------

    def _context(self, run_input: dict[str, Any], visits: list[_Visit]) -> dict[str, Any]:
        stages = self.definition.spec.stages
        outputs: dict[str, Any] = {}
        loops: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        for k, visit in enumerate(visits):
            counts[visit.stage] += 1
            if visit.done:
                outputs[visit.stage] = visit.output(self.definition.stage(visit.stage))
            if k + 1 < len(visits):
                here, there = (self.definition.stage_index(v.stage) for v in (visit, visits[k + 1]))
                if there <= here:
                    loops[visit.stage] += 1
        return {
            "input": run_input,
            "outputs": outputs,
            "loops": {s.name: loops[s.name] for s in stages},
            "visits": {s.name: counts[s.name] for s in stages},
        }

    def _after(self, i: int, context: dict[str, Any]) -> Decision:
        stages = self.definition.spec.stages
        stage = stages[i]
        if stage.loop is not None:
            bound = stage.loop.max
            if stage.loop.max_from is not None:
                limit = self._eval(stage.loop.max_from, context, stage, "loop.max_from")
                if isinstance(limit, (int, float)) and not isinstance(limit, bool):
                    bound = min(bound, max(0, int(limit)))
            again = truthy(self._eval(stage.loop.while_, context, stage, "loop.while"))
            if again and context["loops"][stage.name] < bound:
                return self._enter(self.definition.stage_index(stage.loop.to), context, handoff=True)
        if stage.route is not None:
            value = self._eval(stage.route.on, context, stage, "route.on")
            key = value if isinstance(value, str) else json.dumps(value)
            target = stage.route.cases.get(key, stage.route.default)
            if target is None:
                cases = ", ".join(sorted(stage.route.cases))
                raise _Stop(f"stage {stage.name}: no route for {key!r} (cases: {cases}; no default)")
            return self._enter(self.definition.stage_index(target), context, handoff=True)
        if stage.next == "end" or (stage.next is None and i == len(stages) - 1):
            return self._finish(context, stage)
        return self._enter(self.definition.stage_index(stage.next) if stage.next else i + 1, context, handoff=False)

    def _enter(self, i: int, context: dict[str, Any], *, handoff: bool) -> Decision:
        stage = self.definition.spec.stages[i]
        agent = self.definition.agent_of(stage)
        if stage.for_each is None:
            return Decision(
                new_steps=(NewStep(agent.name, self._input(stage, context), handoff, stage=stage.name, item=0),)
            )
        items = self._eval(stage.for_each.items, context, stage, "for_each.items")
        if not isinstance(items, list):
            raise _Stop(f"stage {stage.name}: for_each.items gave {_type(items)}, not a list")
        if not items:
            raise _Stop(f"stage {stage.name}: for_each.items gave an empty list, so there is nothing to fan out to")
        return Decision(
            new_steps=tuple(
                NewStep(
                    agent.name,
                    self._input(stage, {**context, "item": item, "index": k}),
                    handoff and k == 0,  # one handoff per visit, however wide
                    stage=stage.name,
                    item=k,
                )
                for k, item in enumerate(items[: stage.for_each.max_items])
            )
        )

    def _input(self, stage: StageSpec, context: dict[str, Any]) -> dict[str, Any]:
        if stage.input is None:
            return dict(context["input"])
        if isinstance(stage.input, dict):
            values = {key: self._eval(expr, context, stage, f"input.{key}") for key, expr in stage.input.items()}
            return {key: value for key, value in values.items() if value is not None}
        value = self._eval(stage.input, context, stage, "input")
        if not isinstance(value, dict):
            raise _Stop(f"stage {stage.name}: input gave {_type(value)}, not an object")
        return value

    def _finish(self, context: dict[str, Any], last: StageSpec) -> Decision:
        spec = self.definition.spec.output
        if spec.from_ is None:
            output = context["outputs"].get(last.name)
        elif isinstance(spec.from_, dict):
            output = {key: _eval(expr, context, f"output.from.{key}") for key, expr in spec.from_.items()}
        else:
            output = _eval(spec.from_, context, "output.from")
        if not isinstance(output, dict):
            output = {"items": output} if isinstance(output, list) else {"value": output}
        if spec.schema_ is not None:
            errors = validation_errors(spec.schema_, output, limit=3)
            if errors:
                why = "; ".join(f"{path or 'output'}: {message}" for path, message in errors)
                return Decision(failure=f"the run's output fails the workflow's output schema: {why}")
        return Decision(output=output)

    def _eval(self, expression: str, context: dict[str, Any], stage: StageSpec, what: str) -> Any:
        return _eval(expression, context, f"stage {stage.name}: {what}")


def _eval(expression: str, context: dict[str, Any], what: str) -> Any:
    try:
        return evaluate(expression, context)
    except ExpressionError as exc:
        raise _Stop(f"{what} could not be computed: {exc}") from None


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
