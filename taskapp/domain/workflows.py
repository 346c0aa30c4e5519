"""The built-in workflows (research, summarize), their input schemas, and the registry.

Each says what happens next given a run's input and its steps so far
(`taskapp.domain.engine` applies the kill switches around it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from taskapp.domain.engine import Decision, Limits, NewStep, StepState, Workflow
from taskapp.domain.tokens import CHARS_PER_TOKEN, trim_to_budget


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
                new_steps=(
                    NewStep(
                        "reviewer", {"question": question, "title": out.get("title", ""), "draft": out.get("draft", "")}
                    ),
                )
            )
        if last.agent == "reviewer":
            drafts = [s for s in steps if s.agent == "writer"]
            revisions = len(drafts) - 1
            latest = drafts[-1].output or {}
            max_revisions = int(run_input.get("max_revisions", 2))
            if out.get("approved") or revisions >= max_revisions:
                return Decision(
                    output={
                        "title": latest.get("title", ""),
                        "answer": latest.get("draft", ""),
                        "approved": bool(out.get("approved")),
                        "revisions": revisions,
                        "review": out.get("feedback", ""),
                    }
                )
            writer_input = self._writer_input(question, steps, limits)
            writer_input.update(previous_draft=latest.get("draft", ""), feedback=out.get("feedback", ""))
            return Decision(new_steps=(NewStep("writer", writer_input, handoff=True),))
        return Decision(failure=f"workflow {self.name} cannot follow agent {last.agent!r}")

    @staticmethod
    def _writer_input(question: str, steps: Sequence[StepState], limits: Limits) -> dict[str, Any]:
        research = [s for s in steps if s.agent == "researcher" and s.output]
        texts = [f"{s.input.get('sub_question', '')}: {(s.output or {}).get('findings', '')}" for s in research]
        return {"question": question, "findings": trim_to_budget(texts, limits.context_token_budget)}


# All the summarizer reads (3,000 tokens): longer text is refused, never cut short unseen.
SUMMARIZE_MAX_CHARS = 12_000


class SummarizeInput(RunInput):
    text: NonBlank = Field(
        min_length=1,
        max_length=SUMMARIZE_MAX_CHARS,
        description=f"The text to summarise (at most {SUMMARIZE_MAX_CHARS:,} characters)",
    )


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


_BUILT_IN: tuple[Workflow, ...] = (ResearchWorkflow(), SummarizeWorkflow())
WORKFLOWS: dict[str, Workflow] = {w.name: w for w in _BUILT_IN}


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
