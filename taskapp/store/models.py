"""PostgreSQL schema: the source of truth for teams, runs, steps, LLM calls and events."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from taskapp.domain.status import (  # noqa: F401 (the status columns hold these; importers find them here too)
    FINAL_RUN_STATUSES,
    FINAL_STEP_STATUSES,
    PENDING_STEP_STATUSES,
    RUN_STATUSES,
    STEP_STATUSES,
)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, Decimal: Numeric(14, 8)}


def _now_default() -> Any:
    return func.now()


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())
    # The team's share of the project's Gemini quota (None: no limit of its own).
    max_concurrent_runs: Mapped[int | None] = mapped_column(Integer)
    daily_token_budget: Mapped[int | None] = mapped_column(BigInteger)
    # Operators see fleet-wide numbers (every team, queue depths) in the metrics and dashboard.
    is_operator: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="team")


class ApiKey(Base):
    """Only a SHA-256 of the key is stored; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    team: Mapped[Team] = relationship(back_populates="api_keys")


class WebSession(Base):
    """A browser's sign-in, bound to the API key it was made from.

    The cookie holds only a random token (its SHA-256 is stored here), so a cookie
    signed with a leaked SECRET_KEY names no session; revoking the key or signing out
    ends the session for every web process at once, because each request reads this row.
    """

    __tablename__ = "web_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginLink(Base):
    """A one-time, short-lived sign-in link (so no API key ever appears in a URL)."""

    __tablename__ = "login_links"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Workflow(Base):
    """A workflow's name for a team (or, with no team, shared by the deployer's files)."""

    __tablename__ = "workflows"
    __table_args__ = (
        Index("uq_workflows_team_name", "team_id", "name", unique=True, postgresql_where=text("team_id IS NOT NULL")),
        Index("uq_workflows_shared_name", "name", unique=True, postgresql_where=text("team_id IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    latest_version: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())
    # Retired: no new runs; runs in flight keep their version. Pushing the name again revives it.
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WorkflowVersion(Base):
    """One immutable version of a workflow: the checked definition, numbered and content-hashed."""

    __tablename__ = "workflow_versions"
    __table_args__ = (UniqueConstraint("workflow_id", "version", name="uq_workflow_versions_number"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    # json, not jsonb: the document keeps its key order (agents, fields, schema properties).
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("team_id", "idempotency_key", name="uq_runs_team_idempotency_key"),
        Index("ix_runs_team_created", "team_id", "created_at", "id"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_team_status", "team_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    workflow: Mapped[str] = mapped_column(String(100))
    # The exact version the run started with: every worker decides it from that definition.
    # None only for runs stored before versions existed (decided by the shared workflow's latest).
    workflow_version_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workflow_versions.id"))
    input: Mapped[dict[str, Any]]
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # With a key: the fingerprint of the request that made the run (intake.request_fingerprint),
    # so the key sent again with another body is a conflict, not this run. None before migration 0006.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    output: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    steps: Mapped[list[Step]] = relationship(back_populates="run", order_by="Step.seq")


class Step(Base):
    """One agent invocation; `(run_id, seq)` is its deterministic key, and so is its id."""

    __tablename__ = "steps"
    __table_args__ = (
        UniqueConstraint("run_id", "seq", name="uq_steps_run_seq"),
        Index("ix_steps_status_agent", "status", "agent"),
        Index("ix_steps_batch_id", "batch_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    agent: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    input: Mapped[dict[str, Any]]
    output: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    batch_id: Mapped[uuid.UUID | None]
    llm_call_id: Mapped[uuid.UUID | None]
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    # Of tokens_in, those Gemini served from its prompt cache (billed at the cached price).
    tokens_cached: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    cost_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    batched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    buffer_wait_ms: Mapped[int | None] = mapped_column(Integer)
    # Control passed back to an earlier agent (counts against the handoff depth); a field of the
    # step, never a key of the input that the prompt carries to Gemini.
    handoff: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    stage: Mapped[str | None] = mapped_column(String(100))  # the definition's stage
    kind: Mapped[str] = mapped_column(String(10), server_default="agent", default="agent")  # agent | tool
    item: Mapped[int | None] = mapped_column(Integer)  # fan-out item (0 outside a fan-out)
    # The batch buffer it joins (taskapp.domain.agents.lane_of): its agent's, and its team's
    # unless the agent batches across teams. None for tool steps.
    lane: Mapped[str | None] = mapped_column(String(200))

    run: Mapped[Run] = relationship(back_populates="steps")


class Batch(Base):
    """One flush of an agent's buffer: the steps that share one Gemini call (plus repairs)."""

    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_agent_model_flushed", "agent", "model", "flushed_at"),
        # Batches whose calls are not over yet (taskapp.store.in_motion): few at any time.
        Index("ix_batches_unfinished", "flushed_at", postgresql_where=text("finished_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    agent: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    lane: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(20))  # full | window | interactive | idle
    mean_wait_ms: Mapped[int] = mapped_column(Integer, default=0)
    max_wait_ms: Mapped[int] = mapped_column(Integer, default=0)
    flushed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))


class LlmCall(Base):
    """One request to Gemini (one batch), billed once."""

    __tablename__ = "llm_calls"
    __table_args__ = (Index("ix_llm_calls_agent_model_created", "agent", "model", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    batch_id: Mapped[uuid.UUID] = mapped_column(index=True)
    agent: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    step_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    # Of tokens_in, those Gemini served from its prompt cache (usage_metadata.cached_content_token_count).
    tokens_cached: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())


def of_running_run() -> ColumnElement[bool]:
    """A step's run is running, checked for each step by primary key.

    For statements on a batch's few steps. Written as `run_id IN (SELECT id FROM runs WHERE
    status = 'running')` it is a join the planner may drive from every running run: 13 ms
    for 3,000 of them when the tables have no statistics (autovacuum off), 0.1 ms this way.
    """
    return select(Run.status).where(Run.id == Step.run_id).scalar_subquery() == "running"


class Event(Base):
    """Every state change, in commit order; the id is the SSE event id."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now_default())
