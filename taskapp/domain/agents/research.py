"""The research team: planner -> researchers -> writer <-> reviewer."""

from __future__ import annotations

from pydantic import BaseModel, Field

from taskapp.domain.agents import Agent, register


class Plan(BaseModel):
    sub_questions: list[str] = Field(min_length=1, max_length=6)


class Findings(BaseModel):
    findings: str = Field(min_length=1)
    sources: list[str] = Field(default_factory=list)


class Draft(BaseModel):
    title: str = Field(min_length=1)
    draft: str = Field(min_length=1)


class Review(BaseModel):
    approved: bool
    feedback: str


PLANNER = Agent(
    name="planner",
    model="gemini-2.5-flash",
    system_prompt=(
        "You plan research. Break the user's question into 2 to 4 focused, "
        "independent sub-questions that together answer it."
    ),
    output_schema=Plan,
    description="Splits a question into sub-questions.",
)

RESEARCHER = Agent(
    name="researcher",
    model="gemini-2.5-flash-lite",
    system_prompt=(
        "You are a careful researcher. Answer the sub-question concisely with "
        "facts relevant to the overall question. Name sources when you know them."
    ),
    output_schema=Findings,
    description="Answers one sub-question.",
)

WRITER = Agent(
    name="writer",
    model="gemini-2.5-flash",
    system_prompt=(
        "You write a clear, well-structured answer to the question from the "
        "research findings. If reviewer feedback is given, revise the previous "
        "draft to address it."
    ),
    output_schema=Draft,
    description="Writes (or revises) the answer from the findings.",
)

REVIEWER = Agent(
    name="reviewer",
    model="gemini-2.5-flash-lite",
    system_prompt=(
        "You review a draft answer for accuracy, completeness and clarity. "
        "Approve it, or give specific feedback for one revision."
    ),
    output_schema=Review,
    temperature=0.0,
    description="Approves the draft or hands it back to the writer.",
)

register(PLANNER, RESEARCHER, WRITER, REVIEWER)
