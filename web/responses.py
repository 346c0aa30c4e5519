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
from pydantic import BaseModel, Field

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
    cost_usd: float
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
    cost_usd: float
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


class WorkflowInfo(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any] = Field(description="JSON Schema of the run's `input`")
    agents: list[AgentInfo]


class WorkflowList(BaseModel):
    workflows: list[WorkflowInfo]


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
