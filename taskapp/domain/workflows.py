"""Workflow decisions: given a run's input and its steps so far, what happens next.

Plain functions over plain data: the orchestrator feeds them rows and carries out
the decision; nothing here touches Celery, a database or an LLM. The kill switches
(step limit, token budget, handoff depth, run timeout) are checked here too, so
every run ends whatever a workflow asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from taskapp.domain.tokens import CHARS_PER_TOKEN, trim_to_budget

PENDING = frozenset({"queued", "batched", "running"})


@dataclass(frozen=True)
class StepState:
    seq: int
    agent: str
    status: str
    input: dict[str, Any]
    output: dict[str, Any] | None = None
    error: str | None = None
    tokens: int = 0


@dataclass(frozen=True)
class NewStep:
    agent: str
    input: dict[str, Any]
    handoff: bool = False  # control passed back to an earlier agent (counts against depth)


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
    name: str
    description: str
    input_schema: type[BaseModel]
    agents: tuple[str, ...]  # the first is the agent of every run's first step

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
    if any(s.status in PENDING for s in steps):
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
        depth = sum(1 for s in steps if s.input.get("handoff")) + sum(1 for n in decision.new_steps if n.handoff)
        if depth > limits.max_handoff_depth:
            return Decision(failure=f"routing_exhausted: handoff depth over {limits.max_handoff_depth}")
    return decision


def _not_blank(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise PydanticCustomError("blank", "must not be blank")
    return value


# Text a run must have: whitespace alone would still start (and bill) a whole run.
NonBlank = Annotated[str, BeforeValidator(_not_blank)]


class RunInput(BaseModel):
    """A workflow's input: text is kept without surrounding whitespace, and lengths count without it."""

    model_config = ConfigDict(str_strip_whitespace=True)


class ResearchInput(RunInput):
    question: NonBlank = Field(min_length=3, max_length=4000, description="What should the team research?")
    max_revisions: int = Field(default=2, ge=0, le=10, description="How often the reviewer may send the draft back")


@dataclass(frozen=True)
class ResearchWorkflow:
    """planner -> one researcher per sub-question -> writer <-> reviewer (bounded revisions)."""

    name: str = "research"
    description: str = "Plan sub-questions, research each, write an answer, review and revise it."
    input_schema: type[BaseModel] = ResearchInput
    agents: tuple[str, ...] = ("planner", "researcher", "writer", "reviewer")
    max_sub_questions: int = 4

    def next(self, run_input: dict[str, Any], steps: Sequence[StepState], limits: Limits) -> Decision:
        question = run_input["question"]
        if not steps:
            return Decision(new_steps=(NewStep("planner", {"question": question}),))
        last = max(steps, key=lambda s: s.seq)
        out = last.output or {}
        if last.agent == "planner":
            subs = list(out.get("sub_questions") or [])[: self.max_sub_questions] or [question]
            return Decision(
                new_steps=tuple(NewStep("researcher", {"question": question, "sub_question": q}) for q in subs)
            )
        if last.agent == "researcher":
            return Decision(new_steps=(NewStep("writer", self._writer_input(question, steps, limits)),))
        if last.agent == "writer":
            return Decision(
                new_steps=(NewStep("reviewer", {"question": question, "title": out.get("title", ""),
                                                "draft": out.get("draft", "")}),)
            )
        if last.agent == "reviewer":
            drafts = [s for s in steps if s.agent == "writer"]
            revisions = len(drafts) - 1
            latest = drafts[-1].output or {}
            max_revisions = int(run_input.get("max_revisions", 2))
            if out.get("approved") or revisions >= max_revisions:
                return Decision(output={
                    "title": latest.get("title", ""),
                    "answer": latest.get("draft", ""),
                    "approved": bool(out.get("approved")),
                    "revisions": revisions,
                    "review": out.get("feedback", ""),
                })
            writer_input = self._writer_input(question, steps, limits)
            writer_input.update(previous_draft=latest.get("draft", ""), feedback=out.get("feedback", ""),
                                handoff=True)
            return Decision(new_steps=(NewStep("writer", writer_input, handoff=True),))
        return Decision(failure=f"workflow {self.name} cannot follow agent {last.agent!r}")

    @staticmethod
    def _writer_input(question: str, steps: Sequence[StepState], limits: Limits) -> dict[str, Any]:
        research = [s for s in steps if s.agent == "researcher" and s.output]
        texts = [f"{s.input.get('sub_question', '')}: {s.output.get('findings', '')}" for s in research]
        return {"question": question, "findings": trim_to_budget(texts, limits.context_token_budget)}


# All the summarizer reads (3,000 tokens): longer text is refused, never cut short unseen.
SUMMARIZE_MAX_CHARS = 12_000


class SummarizeInput(RunInput):
    text: NonBlank = Field(min_length=1, max_length=SUMMARIZE_MAX_CHARS,
                           description=f"The text to summarise (at most {SUMMARIZE_MAX_CHARS:,} characters)")


@dataclass(frozen=True)
class SummarizeWorkflow:
    """One step: the unit the throughput benchmarks count."""

    name: str = "summarize"
    description: str = "Summarise a text in one step."
    input_schema: type[BaseModel] = SummarizeInput
    agents: tuple[str, ...] = ("summarizer",)

    def next(self, run_input: dict[str, Any], steps: Sequence[StepState], limits: Limits) -> Decision:
        if not steps:
            # The whole text: its length was checked on the way in. (Only a run stored before
            # that check could be longer; it is trimmed, with the mark, to what is read.)
            (text,) = trim_to_budget([run_input["text"]], SUMMARIZE_MAX_CHARS // CHARS_PER_TOKEN)
            return Decision(new_steps=(NewStep("summarizer", {"text": text}),))
        return Decision(output=dict(steps[-1].output or {}))


WORKFLOWS: dict[str, Workflow] = {w.name: w for w in (ResearchWorkflow(), SummarizeWorkflow())}


class UnknownWorkflow(KeyError):
    pass


def first_step_agents() -> frozenset[str]:
    """Agents whose buffers a new submission feeds at once (batching.company_can_come)."""
    return frozenset(w.agents[0] for w in WORKFLOWS.values())


def get_workflow(name: str) -> Workflow:
    try:
        return WORKFLOWS[name]
    except KeyError:
        raise UnknownWorkflow(name) from None


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
