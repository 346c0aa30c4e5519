"""Deciding a run's next move: the kill switches around each workflow's own logic.

Plain functions over plain data: the orchestrator feeds them rows and carries out the
decision; nothing here touches Celery, a database or an LLM. The kill switches (step
limit, token budget, handoff depth, run timeout) are checked here, so every run ends
whatever a workflow asks for, and the decision is a pure function of the workflow, the
run's input and its steps so far: a redelivered message decides the same thing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskapp.domain.quota import TeamShare
from taskapp.domain.status import PENDING_STEP_STATUSES

STEP_NAMESPACE = uuid.UUID("6f1c8a52-3f7e-4a39-9a8e-2b7f0c1d9e11")


def step_key(run_id: uuid.UUID, seq: int) -> uuid.UUID:
    """The deterministic id of a run's seq-th step: a redelivered decision makes the same ids."""
    return uuid.uuid5(STEP_NAMESPACE, f"{run_id}:{seq}")


@dataclass(frozen=True)
class StepState:
    seq: int
    agent: str
    status: str
    input: dict[str, Any]
    output: dict[str, Any] | None = None
    error: str | None = None
    tokens: int = 0
    handoff: bool = False  # this step took control to another stage (a loop back or a route)
    stage: str | None = None  # the definition's stage (None: stored before stages were recorded)
    kind: str = "agent"  # agent | tool
    item: int | None = None  # which fan-out item (0 outside a fan-out)


@dataclass(frozen=True)
class NewStep:
    agent: str  # the agent's name in the definition, or the tool's for a tool step
    input: dict[str, Any]
    handoff: bool = False  # control passed to another stage by a loop or route (counts against depth)
    stage: str | None = None
    kind: str = "agent"  # agent | tool
    item: int = 0


@dataclass(frozen=True)
class Decision:
    """Exactly one of: new steps to run, a final output, a failure, or wait (all empty)."""

    new_steps: tuple[NewStep, ...] = ()
    output: dict[str, Any] | None = None
    failure: str | None = None

    @property
    def finished(self) -> bool:
        return self.output is not None or self.failure is not None


@dataclass(frozen=True)
class Limits:
    max_steps: int = 40
    token_budget: int = 500_000
    max_handoff_depth: int = 5
    run_timeout_s: float = 600
    context_token_budget: int = 3_000


class Workflow(Protocol):
    """What the engine needs of a workflow (read-only: workflows are frozen values)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def input_schema(self) -> dict[str, Any]: ...  # JSON Schema

    @property
    def agents(self) -> tuple[str, ...]: ...  # the first is the agent of every run's first step

    def next(self, run_input: dict[str, Any], steps: Sequence[StepState], limits: Limits) -> Decision: ...


def decide(
    workflow: Workflow,
    run_input: dict[str, Any],
    steps: Sequence[StepState],
    limits: Limits,
    elapsed_s: float = 0.0,
) -> Decision:
    """The next move for a run, with the kill switches applied around the workflow's own logic."""
    if elapsed_s > limits.run_timeout_s:
        return Decision(failure=f"run_timeout: exceeded {limits.run_timeout_s:g}s")
    if any(s.status in PENDING_STEP_STATUSES for s in steps):
        return Decision()
    failed = [s for s in steps if s.status == "failed"]
    if failed:
        first = failed[0]
        return Decision(failure=f"step {first.seq} ({first.agent}) failed: {first.error or 'unknown error'}")
    used = sum(s.tokens for s in steps)
    if used > limits.token_budget:
        return Decision(failure=f"token_budget_exceeded: {used} tokens used, budget {limits.token_budget}")
    decision = workflow.next(run_input, steps, limits)
    if decision.new_steps:
        if len(steps) + len(decision.new_steps) > limits.max_steps:
            return Decision(failure=f"step_limit_exceeded: more than {limits.max_steps} steps")
        depth = sum(1 for s in steps if s.handoff) + sum(1 for n in decision.new_steps if n.handoff)
        if depth > limits.max_handoff_depth:
            return Decision(failure=f"routing_exhausted: handoff depth over {limits.max_handoff_depth}")
    return decision


def within_team_budget(decision: Decision, share: TeamShare, tokens_today: int) -> Decision:
    """A run whose team spent its daily tokens fails instead of making more calls."""
    exhausted = share.budget_exhausted(tokens_today)
    return Decision(failure=exhausted) if exhausted and not decision.finished else decision


@dataclass(frozen=True)
class RunOptions:
    """Per-run options a caller may set; they can only tighten the server's limits."""

    priority: str = "batch"
    overrides: dict[str, Any] = field(default_factory=dict)

    def limits(self, server: Limits) -> Limits:
        def lower(name: str) -> Any:
            mine = self.overrides.get(name)
            theirs = getattr(server, name)
            return theirs if mine is None else min(mine, theirs)

        return Limits(
            max_steps=lower("max_steps"),
            token_budget=lower("token_budget"),
            max_handoff_depth=lower("max_handoff_depth"),
            run_timeout_s=lower("run_timeout_s"),
            context_token_budget=server.context_token_budget,
        )
