"""Request bodies of the JSON API, validated strictly at the boundary."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflow: str = Field(min_length=1, max_length=100)
    input: dict[str, Any]
    options: RunOptionsIn = Field(default_factory=RunOptionsIn)
