"""A one-step workflow's agent: small, cheap, and the unit the benchmarks count."""

from __future__ import annotations

from pydantic import BaseModel, Field

from taskapp.domain.agents import Agent, register


class Summary(BaseModel):
    summary: str = Field(min_length=1)
    keywords: list[str] = Field(default_factory=list, max_length=8)


SUMMARIZER = Agent(
    name="summarizer",
    model="gemini-2.5-flash-lite",
    system_prompt="Summarise the text in two sentences and list up to five keywords.",
    output_schema=Summary,
    description="Summarises a text.",
)

register(SUMMARIZER)
