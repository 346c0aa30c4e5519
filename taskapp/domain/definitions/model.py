"""The workflow definition: the one schema of a team's or a deployer's YAML or JSON file.

These models check the shape (pydantic: field types, names, bounds); the cross-references
(agents named by stages, loop and route targets, expressions against schemas, tools,
models) are checked by `taskapp.domain.definitions.checks`, which reports every problem
with its path. `definition_json_schema()` is the JSON Schema editors use for these files.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Names appear in URLs, Redis keys, metrics and the expressions (outputs.<stage>): keep them plain.
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Expression = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
MAX_SYSTEM_PROMPT_CHARS = 20_000
MAX_STAGES = 50
MAX_FAN_OUT = 64
MAX_LOOP = 50


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchSpec(_Strict):
    """How this agent's steps share calls; unset fields take the deployment's defaults."""

    max_size: int | None = Field(default=None, ge=1, le=64, description="Steps in one Gemini call at most")
    max_wait_ms: int | None = Field(
        default=None, ge=0, le=60_000, description="How long a step waits for company before its call"
    )
    across_teams: bool = Field(
        default=False,
        description=(
            "Let one call carry steps of different teams. Only a deployer's shared workflow may set it: "
            "a model can write one input's content into another's answer, so teams are kept apart by default."
        ),
    )


class AgentSpec(_Strict):
    model: str = Field(min_length=1, max_length=100, description="A Gemini model this deployment serves")
    system_prompt: str = Field(min_length=1, max_length=MAX_SYSTEM_PROMPT_CHARS)
    output_schema: dict[str, Any] = Field(
        description="JSON Schema of the agent's answer: an object, in the subset Gemini's structured output accepts"
    )
    description: str = Field(default="", max_length=500)
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_output_tokens: int = Field(default=2048, ge=16, le=65_536)
    tools: list[Name] = Field(default_factory=list, max_length=16, description="Registered tools the agent may call")
    max_tool_rounds: int = Field(
        default=3, ge=1, le=10, description="How often one step may ask for tool calls before it must answer"
    )
    batch: BatchSpec = Field(default_factory=BatchSpec)


class ForEach(_Strict):
    """Fan-out: one step per item of a list; the stage's output is the list of their outputs (fan-in)."""

    items: Expression = Field(description="JMESPath giving a list, e.g. outputs.planner.sub_questions")
    max_items: int = Field(default=16, ge=1, le=MAX_FAN_OUT, description="Items beyond this many are not run")


class Loop(_Strict):
    """Go back to an earlier stage (or this one) while a condition holds, a bounded number of times."""

    to: Name = Field(description="The stage to go back to: this one or an earlier one")
    while_: Expression = Field(alias="while", description="JMESPath; the loop goes back while it is truthy")
    max: int = Field(ge=1, le=MAX_LOOP, description="How many times at most the loop goes back")
    max_from: Expression | None = Field(
        default=None, description="JMESPath giving a lower bound from the run (e.g. input.max_revisions)"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Route(_Strict):
    """Handoff: the next stage chosen by a value of the output; counts against the handoff depth."""

    on: Expression = Field(description="JMESPath giving the value to route on, e.g. outputs.triage.category")
    cases: dict[str, Name] = Field(min_length=1, description="value -> stage (a later stage)")
    default: Name | None = Field(default=None, description="The stage for any other value (else the run fails)")


class StageSpec(_Strict):
    name: Name
    agent: Name
    input: Expression | dict[str, Expression] | None = Field(
        default=None,
        description=(
            "The agent's input: a JMESPath expression giving an object, or a mapping of field -> JMESPath "
            "(fields that come out null are left out). Default: the run's input."
        ),
    )
    for_each: ForEach | None = None
    loop: Loop | None = None
    route: Route | None = None
    next: Name | Literal["end"] | None = Field(
        default=None, description="The stage after this one (a later one), or end; default: the next in the list"
    )


class OutputSpec(_Strict):
    from_: Expression | dict[str, Expression] | None = Field(
        default=None, alias="from", description="JMESPath (or field -> JMESPath) giving the run's output"
    )
    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description="JSON Schema the output must match"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WorkflowSpec(_Strict):
    """One workflow: its input, its agents, its stages in order, and its output."""

    name: Name
    description: str = Field(default="", max_length=1000)
    input_schema: dict[str, Any] = Field(description="JSON Schema of a run's input (an object)")
    agents: dict[Name, AgentSpec] = Field(min_length=1, max_length=32)
    stages: list[StageSpec] = Field(min_length=1, max_length=MAX_STAGES)
    output: OutputSpec = Field(
        default_factory=OutputSpec, description="Default: the last stage's output, with no schema check"
    )


def definition_json_schema() -> dict[str, Any]:
    """The JSON Schema of a definition file (served at /api/workflows/schema; docs/workflow.schema.json)."""
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "taskapp workflow definition"
    return schema
