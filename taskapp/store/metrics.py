"""Metrics from the source of truth: per agent and model, and per model per minute.

Read from Postgres (what was billed and committed, whichever worker did it), so
every web process reports the same numbers. Each read takes a `Scope`: a team sees
its own steps, calls and costs; only operators see the whole fleet. A call shared by
several teams' steps counts for each of them, with the tokens and cost of their own
steps only.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, Select, and_, cast, func, select
from sqlalchemy.orm import Session

from taskapp.store.models import Batch, Event, LlmCall, Run, Step


@dataclass(frozen=True)
class Scope:
    """Whose numbers: one team's, or (team_id None) the whole fleet's."""

    team_id: uuid.UUID | None = None

    @property
    def fleet(self) -> bool:
        return self.team_id is None

    @classmethod
    def of(cls, team_id: uuid.UUID, is_operator: bool) -> Scope:
        """An operator's view is the fleet; anyone else's, their team."""
        return cls(None if is_operator else team_id)


FLEET = Scope()


def team_batch_ids(scope: Scope, since: datetime) -> Select[uuid.UUID | None]:
    """The batches that carried the team's steps queued since `since`."""
    return (
        select(Step.batch_id)
        .join(Run, Run.id == Step.run_id)
        .where(Run.team_id == scope.team_id, Step.queued_at >= since)
    )


@dataclass(frozen=True)
class AgentStats:
    agent: str
    model: str
    steps: int
    steps_failed: int
    batches: int
    batches_by_reason: dict[str, int]  # why each flush happened: full, window, idle or interactive
    mean_batch_size: float
    llm_calls: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    mean_wait_ms: float | None
    buffer_wait_p50_ms: float | None
    buffer_wait_p95_ms: float | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    rate_limited: int
    tokens_cached: int = 0  # of tokens_in, served from Gemini's prompt cache (billed at the cached price)


@dataclass(frozen=True)
class ModelMinute:
    model: str
    minute: datetime
    requests: int
    tokens_in: int


def agent_stats(session: Session, since: datetime, scope: Scope = FLEET) -> list[AgentStats]:
    """Steps, batches, latency percentiles, tokens, cost and 429s per agent and model."""
    ok = LlmCall.status.in_(("ok", "partial"))  # answered: a failed or lost call's latency says nothing
    call_filter = [LlmCall.created_at >= since]
    batch_filter = [Batch.flushed_at >= since]
    step_filter = [Step.queued_at >= since]
    if not scope.fleet:
        call_filter.append(LlmCall.batch_id.in_(team_batch_ids(scope, since)))
        step_filter.append(Step.run_id.in_(select(Run.id).where(Run.team_id == scope.team_id)))
    calls = {
        (r.agent, r.model): r
        for r in session.execute(
            select(
                LlmCall.agent,
                LlmCall.model,
                func.count().label("calls"),
                func.percentile_cont(0.5).within_group(LlmCall.latency_ms).filter(ok).label("p50"),
                func.percentile_cont(0.95).within_group(LlmCall.latency_ms).filter(ok).label("p95"),
                func.coalesce(func.sum(LlmCall.tokens_in), 0).label("tokens_in"),
                func.coalesce(func.sum(LlmCall.tokens_out), 0).label("tokens_out"),
                func.coalesce(func.sum(LlmCall.tokens_cached), 0).label("tokens_cached"),
                func.coalesce(func.sum(LlmCall.cost_usd), 0).label("cost"),
                func.count().filter(LlmCall.error.like("rate_limited%")).label("rate_limited"),
            )
            .where(*call_filter)
            .group_by(LlmCall.agent, LlmCall.model)
        )
    }
    batches: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}  # reason -> (batches, steps)
    if scope.fleet:
        batch_rows = session.execute(
            select(Batch.agent, Batch.model, Batch.reason, func.count(), func.sum(Batch.size))
            .where(*batch_filter)
            .group_by(Batch.agent, Batch.model, Batch.reason)
        )
    else:  # the team's batches, and only the team's own steps in them
        batch_rows = session.execute(
            select(Batch.agent, Batch.model, Batch.reason, func.count(func.distinct(Batch.id)), func.count())
            .join(Step, Step.batch_id == Batch.id)
            .where(*batch_filter, *step_filter)
            .group_by(Batch.agent, Batch.model, Batch.reason)
        )
    for agent, model, reason, n, size in batch_rows:
        batches.setdefault((agent, model), {})[reason] = (int(n), int(size))
    wait_ms = func.extract("epoch", Step.started_at - Step.queued_at) * 1000
    steps = session.execute(
        select(
            Step.agent,
            Step.model,
            func.count().filter(Step.status.in_(("succeeded", "failed"))).label("done"),
            func.count().filter(Step.status == "failed").label("failed"),
            func.avg(cast(wait_ms, Float)).filter(Step.started_at.is_not(None)).label("wait"),
            func.percentile_cont(0.5).within_group(Step.buffer_wait_ms).label("buffer_p50"),
            func.percentile_cont(0.95).within_group(Step.buffer_wait_ms).label("buffer_p95"),
            func.coalesce(func.sum(Step.tokens_in), 0).label("tokens_in"),
            func.coalesce(func.sum(Step.tokens_out), 0).label("tokens_out"),
            func.coalesce(func.sum(Step.tokens_cached), 0).label("tokens_cached"),
            func.coalesce(func.sum(Step.cost_usd), 0).label("cost"),
        )
        .where(*step_filter)
        .group_by(Step.agent, Step.model)
    ).all()
    out = []
    for s in steps:
        c = calls.get((s.agent, s.model))
        if scope.fleet:  # every call made
            tokens_in, tokens_out, cached, cost = (
                (int(c.tokens_in), int(c.tokens_out), int(c.tokens_cached), float(c.cost)) if c else (0, 0, 0, 0.0)
            )
        else:  # the team's own steps' share of each call
            tokens_in, tokens_out, cached, cost = (
                int(s.tokens_in),
                int(s.tokens_out),
                int(s.tokens_cached),
                float(s.cost),
            )
        by_reason = batches.get((s.agent, s.model), {})
        n_batches, n_batched = sum(n for n, _ in by_reason.values()), sum(size for _, size in by_reason.values())
        out.append(
            AgentStats(
                agent=s.agent,
                model=s.model,
                steps=s.done,
                steps_failed=s.failed,
                batches=n_batches,
                batches_by_reason={reason: n for reason, (n, _) in sorted(by_reason.items())},
                mean_batch_size=round(n_batched / n_batches, 2) if n_batches else 0.0,
                llm_calls=c.calls if c else 0,
                latency_p50_ms=_num(c.p50) if c else None,
                latency_p95_ms=_num(c.p95) if c else None,
                mean_wait_ms=_num(s.wait),
                buffer_wait_p50_ms=_num(s.buffer_p50),
                buffer_wait_p95_ms=_num(s.buffer_p95),
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cost_usd=cost,
                rate_limited=c.rate_limited if c else 0,
                tokens_cached=cached,
            )
        )
    return sorted(out, key=lambda a: (a.agent, a.model))


def usage_by_minute(
    session: Session, minutes: int = 30, now: datetime | None = None, scope: Scope = FLEET
) -> list[ModelMinute]:
    """Requests and input tokens per model per minute: quota use over time (a team: its own)."""
    now = now or datetime.now(UTC)
    since = now - timedelta(minutes=minutes)
    if scope.fleet:
        minute = func.date_trunc("minute", LlmCall.created_at)
        query = select(
            LlmCall.model, minute.label("minute"), func.count(), func.coalesce(func.sum(LlmCall.tokens_in), 0)
        ).where(and_(LlmCall.created_at >= since, LlmCall.status != "error"))
        model = LlmCall.model
    else:  # the calls that served the team's steps, with the team's own input tokens
        minute = func.date_trunc("minute", Step.finished_at)
        query = (
            select(
                Step.model,
                minute.label("minute"),
                func.count(func.distinct(Step.llm_call_id)),
                func.coalesce(func.sum(Step.tokens_in), 0),
            )
            .join(Run, Run.id == Step.run_id)
            .where(Run.team_id == scope.team_id, Step.finished_at >= since, Step.llm_call_id.is_not(None))
        )
        model = Step.model
    rows = session.execute(query.group_by(model, minute).order_by(minute)).all()
    return [ModelMinute(m_, m, int(n), int(t)) for m_, m, n, t in rows]


def minute_series(points: list[ModelMinute], minutes: int, now: datetime | None = None) -> dict[str, list[ModelMinute]]:
    """Per model, one point for each of the last `minutes` minutes, zero where nothing was called."""
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    slots = [end - timedelta(minutes=k) for k in range(minutes - 1, -1, -1)]
    by_model: dict[str, dict[datetime, ModelMinute]] = {}
    for p in points:
        by_model.setdefault(p.model, {})[p.minute] = p
    return {model: [seen.get(m, ModelMinute(model, m, 0, 0)) for m in slots] for model, seen in by_model.items()}


def quota_use(session: Session, scope: Scope = FLEET, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """What each model used in the last 60 s and the last 24 h (the quota dimensions); a team: its own."""
    now = now or datetime.now(UTC)
    minute_ago, day_ago = now - timedelta(seconds=60), now - timedelta(days=1)
    if not scope.fleet:
        return _team_quota_use(session, scope, minute_ago, day_ago)
    rows = session.execute(
        select(
            LlmCall.model,
            func.count().filter(LlmCall.created_at >= minute_ago),
            func.coalesce(func.sum(LlmCall.tokens_in).filter(LlmCall.created_at >= minute_ago), 0),
            func.count(),
        )
        .where(LlmCall.created_at >= day_ago, LlmCall.status != "error")
        .group_by(LlmCall.model)
    ).all()
    return {
        m: {"requests_last_minute": rpm, "input_tokens_last_minute": int(tpm), "requests_last_day": rpd}
        for m, rpm, tpm, rpd in rows
    }


def _team_quota_use(
    session: Session, scope: Scope, minute_ago: datetime, day_ago: datetime
) -> dict[str, dict[str, int]]:
    call = Step.llm_call_id
    rows = session.execute(
        select(
            Step.model,
            func.count(func.distinct(call)).filter(Step.finished_at >= minute_ago),
            func.coalesce(func.sum(Step.tokens_in).filter(Step.finished_at >= minute_ago), 0),
            func.count(func.distinct(call)),
        )
        .join(Run, Run.id == Step.run_id)
        .where(Run.team_id == scope.team_id, Step.finished_at >= day_ago, call.is_not(None))
        .group_by(Step.model)
    ).all()
    return {
        m: {"requests_last_minute": rpm, "input_tokens_last_minute": int(tpm), "requests_last_day": rpd}
        for m, rpm, tpm, rpd in rows
    }


def run_counts(session: Session, scope: Scope = FLEET) -> dict[str, int]:
    query = select(Run.status, func.count())
    if not scope.fleet:
        query = query.where(Run.team_id == scope.team_id)
    return dict(session.execute(query.group_by(Run.status)).all())


def quota_waits(session: Session, since: datetime, scope: Scope = FLEET) -> dict[str, int]:
    """How many times steps were told to wait for quota, per model."""
    model = Event.data["model"].astext
    query = select(model, func.count()).where(Event.type == "quota.wait", Event.created_at >= since)
    if not scope.fleet:
        query = query.join(Run, Run.id == Event.run_id).where(Run.team_id == scope.team_id)
    return dict(session.execute(query.group_by(model)).all())


FLEET_ONLY_GATE_FIELDS = frozenset({"waiting"})  # how many steps wait: the fleet's backlog


def gate_view(usage: dict[str, dict[str, Any]], scope: Scope) -> dict[str, dict[str, Any]]:
    """The quota gate as this caller may see it: each dimension's used / limit and the model's state
    (paused, circuit) for everyone; how many steps wait fleet-wide only for operators."""
    if scope.fleet:
        return usage
    return {model: {k: v for k, v in dims.items() if k not in FLEET_ONLY_GATE_FIELDS} for model, dims in usage.items()}


def snapshot(
    session: Session,
    queue_depths: dict[str, int | None] | None,
    window_s: int,
    gate_usage: dict[str, dict[str, Any]] | None = None,
    scope: Scope = FLEET,
) -> dict[str, Any]:
    """Everything `GET /api/metrics` reports: a team's own numbers, or the fleet's for operators.

    The gate's use of each model's quota (used / limit) is fleet-wide by nature and shown to
    all (`gate_view`); queue depths and the fleet's waiting steps only to operators. A team's
    `waits` counts its own steps told to wait.
    """
    since = datetime.now(UTC) - timedelta(seconds=window_s)
    waits = quota_waits(session, since, scope)
    quota = {
        model: {**usage, "waits": waits.get(model, 0)} for model, usage in gate_view(gate_usage or {}, scope).items()
    }
    out: dict[str, Any] = {
        "scope": "fleet" if scope.fleet else "team",
        "window_s": window_s,
        "agents": [asdict(a) for a in agent_stats(session, since, scope)],
        "quota": quota,
        "quota_use": quota_use(session, scope),
        "runs": run_counts(session, scope),
    }
    if scope.fleet:
        out["queues"] = queue_depths
    return out


def _num(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
