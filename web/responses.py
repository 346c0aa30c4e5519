"""The JSON bodies the API answers with, as pydantic models.

One definition per shape: the views build every body through these models, and the
OpenAPI document (web/openapi.py) describes the same models, so what a client reads
in the document is what the server sends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import Response as FlaskResponse
from flask import current_app
from pydantic import BaseModel, ConfigDict, Field

from taskapp.domain.status import RUN_STATUSES, STEP_STATUSES
from taskapp.store.metrics import AgentStats

RunStatus = Literal[RUN_STATUSES]  # type: ignore[valid-type]
StepStatus = Literal[STEP_STATUSES]  # type: ignore[valid-type]


class ErrorInfo(BaseModel):
    code: str = Field(description="machine-readable, e.g. `invalid_request`, `not_found`, `unavailable`")
    message: str
    details: Any = Field(default=None, description="per-field problems for validation errors, else null")


class ErrorBody(BaseModel):
    """Every error the API answers with (4xx and 5xx alike)."""

    error: ErrorInfo


class Progress(BaseModel):
    steps_done: int
    steps: int


class RunLinks(BaseModel):
    self: str = Field(description="this run in the API")
    events: str = Field(description="its event stream")
    ui: str = Field(description="its page in the web UI")


class RunSummary(BaseModel):
    """A run without its steps."""

    id: str
    workflow: str
    workflow_version: int | None = Field(description="the version of the workflow the run is pinned to")
    status: RunStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    progress: Progress
    links: RunLinks


class RunCreated(RunSummary):
    created: bool = Field(description="false when the Idempotency-Key replayed a run made earlier")


class RunPage(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last one")


class StepView(BaseModel):
    """One agent call of a run: what it was given, what it answered, what it cost."""

    id: str
    seq: int
    agent: str
    model: str
    status: StepStatus
    input: dict[str, Any]
    output: dict[str, Any] | None
    error: str | None
    attempts: int
    batch_id: str | None = Field(description="the batch (one Gemini call) it was sent in")
    tokens_in: int
    tokens_out: int
    tokens_cached: int = Field(0, description="of tokens_in, those Gemini served from its prompt cache")
    cost_usd: float = Field(description="its share of its calls' cost, exact to 1e-8 dollars")
    wait_ms: int | None = Field(description="queued to started")
    buffer_wait_ms: int | None = Field(description="time spent in a batch buffer")
    latency_ms: int | None = Field(description="started to finished")
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunTotals(BaseModel):
    steps: int
    steps_done: int
    tokens_in: int
    tokens_out: int
    tokens_cached: int = Field(0, description="of tokens_in, those Gemini served from its prompt cache")
    cost_usd: float = Field(description="the sum of its steps' costs, unrounded (to 1e-8 dollars)")
    cost_usd_exact: str = Field("0", description="the same sum as a decimal string, without float rounding")
    cost_usd_rounded: float = Field(0.0, description="the total to the cent (half up), as the pages show it")
    llm_calls: int


class RunDetail(RunSummary):
    """A run with its input, output, totals and steps."""

    input: dict[str, Any]
    options: dict[str, Any]
    output: dict[str, Any] | None
    totals: RunTotals
    steps: list[StepView]


class Used(BaseModel):
    used: int
    limit: int | None = Field(description="null: no limit on this dimension")


class DailyUsed(Used):
    resets_at: datetime


class QuotaUse(BaseModel):
    """A model's quota as the fleet's gate sees it."""

    rpm: Used
    tpm: Used
    rpd: DailyUsed
    concurrency: Used
    waiting: int | None = Field(default=None, description="steps waiting for quota now, fleet-wide (operators only)")
    paused_until: datetime | None = Field(description="set while Gemini asked the fleet to back off")
    circuit: Literal["closed", "open", "half_open"]
    waits: int = Field(description="times steps were told to wait for quota in the window")


class MetricsSnapshot(BaseModel):
    scope: Literal["team", "fleet"] = Field(
        description="whose numbers: the caller's team's, or (operators) the whole fleet's"
    )
    window_s: int
    agents: list[AgentStats]
    quota: dict[str, QuotaUse] = Field(description="per model; empty while Redis is down")
    quota_use: dict[str, dict[str, int]] = Field(
        description="per model: requests and input tokens billed in the last minute and day"
    )
    runs: dict[str, int] = Field(description="runs by status")
    queues: dict[str, int | None] | None = Field(
        default=None, description="operators only: messages waiting per queue; null while the broker is down"
    )


class AgentInfo(BaseModel):
    name: str
    model: str
    description: str


class FanOutInfo(BaseModel):
    items: str = Field(description="JMESPath giving the list: one step per item")
    max_items: int


class GraphNode(BaseModel):
    id: str = Field(description="the stage's name; `_input` and `_output` for the run's input and output")
    kind: Literal["input", "stage", "output"]
    label: str
    agent: str | None
    model: str | None
    tools: list[str]
    fan_out: FanOutInfo | None = Field(description="set when the stage runs once per item of a list (then fans in)")


class GraphEdge(BaseModel):
    source: str
    target: str
    kind: Literal["next", "fan_out", "loop", "route"]
    label: str = Field(description="what the edge means, in words")
    condition: str | None = Field(description="a loop's `while`, a route's `on`, a fan-out's `items` (JMESPath)")
    value: str | None = Field(description="a route's case")
    default: bool = Field(description="a route's default (any other value)")
    max: int | None = Field(description="a loop's bound, or a fan-out's `max_items`")
    max_from: str | None = Field(description="a loop's lower bound read from the run")


class WorkflowGraph(BaseModel):
    """A workflow's stages and every way one can follow another (taskapp.domain.definitions.graph)."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]


WorkflowScope = Literal["team", "shared"]


class WorkflowInfo(BaseModel):
    name: str
    scope: WorkflowScope = Field(description="`team`: the caller's team's own; `shared`: the deployer's")
    version: int = Field(description="the latest version: what a run starts with unless it names one")
    description: str
    input_schema: dict[str, Any] = Field(description="JSON Schema of the run's `input`")
    agents: list[AgentInfo]
    graph: WorkflowGraph


class WorkflowList(BaseModel):
    workflows: list[WorkflowInfo]


class VersionInfo(BaseModel):
    version: int
    content_hash: str = Field(description="SHA-256 of the normalised definition")
    created_at: datetime


class WorkflowVersionInfo(VersionInfo):
    """A stored version (the answer to a push)."""

    name: str
    scope: WorkflowScope


class ToolInfo(BaseModel):
    name: str
    description: str
    args_schema: dict[str, Any]
    timeout_s: float
    retries: int
    on_error: Literal["feed_back", "fail"]


class WorkflowVersionDetail(WorkflowVersionInfo):
    """One version: its definition as stored (normalised: defaults spelt out), and the tools it uses."""

    definition: dict[str, Any] = Field(description="the definition; PUT it back unchanged and no version is made")
    tools: list[ToolInfo] = Field(description="the registered tools its agents use, as they were when it was stored")
    graph: WorkflowGraph


class WorkflowDetail(WorkflowVersionDetail):
    """A workflow: its current (latest) version in full, and every version, newest first."""

    versions: list[VersionInfo]


class DefinitionSchema(BaseModel):
    """A JSON Schema (draft 2020-12): the one of workflow definitions."""

    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(description="postgres, redis and broker: `ok` or what went wrong")


def reply(body: BaseModel, status: int = 200, *, omit_unset: bool = False) -> FlaskResponse:
    """A JSON response from one of these models (the same shape the document gives for it).

    `omit_unset`: fields the body was built without are left out, not sent as null (what only
    some callers may see, such as the fleet's queue depths).
    """
    return current_app.response_class(
        body.model_dump_json(exclude_unset=omit_unset), status=status, mimetype="application/json"
    )
