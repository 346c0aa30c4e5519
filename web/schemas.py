"""Requests of the JSON API (bodies, query strings, headers), validated strictly at the boundary."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from taskapp.domain.definitions.model import Name, WorkflowSpec
from taskapp.store.models import RUN_STATUSES

MAX_PAGE = 100
MAX_WINDOW_S = 30 * 86400


class RunLimits(BaseModel):
    """Per-run kill switches; they can only lower the server's limits (the bounds keep numbers sane)."""

    model_config = ConfigDict(extra="forbid")
    max_steps: int | None = Field(default=None, ge=1, le=100_000)
    token_budget: int | None = Field(default=None, ge=1, le=10**12)
    max_handoff_depth: int | None = Field(default=None, ge=0, le=1_000)
    run_timeout_s: float | None = Field(default=None, gt=0, le=30 * 86400)


class RunOptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    priority: Literal["batch", "interactive"] = "batch"
    limits: RunLimits = Field(default_factory=RunLimits)


def _optional(schema: dict[str, Any]) -> None:
    """An optional parameter is documented by `required: false`, not by a `null` default."""
    schema.pop("default", None)


def _run_example(schema: dict[str, Any]) -> None:
    example = {"workflow": "summarize", "input": {"text": "Celery runs tasks; Redis carries the messages."}}
    schema["examples"] = [example]


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_run_example)
    workflow: str = Field(min_length=1, max_length=100, description="a workflow of `GET /api/workflows`")
    version: Annotated[int, Field(ge=1, le=2**31 - 1)] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_optional,
        description="the workflow's version to run (default: its latest)",
    )
    input: dict[str, Any] = Field(
        description="the run's input: checked against the chosen version's `input_schema` (`GET /api/workflows`)"
    )
    options: RunOptionsIn = Field(default_factory=RunOptionsIn)


def _clamp(low: int, high: int) -> AfterValidator:
    return AfterValidator(lambda value: min(high, max(low, value)))


class RunCreateHeaders(BaseModel):
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | SkipJsonSchema[None] = Field(
        default=None,
        alias="Idempotency-Key",
        json_schema_extra=_optional,
        description="retrying with the same key returns the run it made first instead of a new one",
    )


class RunListQuery(BaseModel):
    status: Annotated[
        Literal[RUN_STATUSES] | SkipJsonSchema[None],  # type: ignore[valid-type]
        BeforeValidator(lambda value: value or None),
    ] = Field(  # `?status=`: no filter
        default=None, json_schema_extra=_optional
    )
    workflow: Annotated[
        Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")] | SkipJsonSchema[None],
        BeforeValidator(lambda value: value or None),
    ] = Field(  # `?workflow=`: no filter
        default=None, json_schema_extra=_optional, description="only the runs of this workflow (its name)"
    )
    limit: Annotated[int, _clamp(1, MAX_PAGE)] = Field(
        default=20, description=f"runs per page, 1 to {MAX_PAGE} (values outside are clamped)"
    )
    cursor: str | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_optional, description="`next_cursor` of the previous page"
    )


class MetricsQuery(BaseModel):
    window_s: Annotated[int, _clamp(60, MAX_WINDOW_S)] = Field(
        default=3600, description=f"seconds to look back, 60 to {MAX_WINDOW_S} (values outside are clamped)"
    )


# The event stream reads Last-Event-ID itself (header, else query) and documents it with these two.
class RunEventsQuery(BaseModel):
    last_event_id: int | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_optional, description="resume after this event id (as the header)"
    )


class RunEventsHeaders(BaseModel):
    last_event_id: int | SkipJsonSchema[None] = Field(
        default=None,
        alias="Last-Event-ID",
        json_schema_extra=_optional,
        description="resume after this event id; browsers send it when they reconnect",
    )


class DefinitionIn(WorkflowSpec):
    """A workflow definition (the schema of GET /api/workflows/schema); `name` may be left out, as
    the URL names it. YAML is accepted too, with `Content-Type: application/yaml`."""

    name: Name | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_optional)  # type: ignore[assignment]
