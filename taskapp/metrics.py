"""Fleet metrics from the source of truth: per agent and model, and per model per minute.

Read from Postgres (what was billed and committed, whichever worker did it), so
every web process reports the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, and_, cast, func, select
from sqlalchemy.orm import Session

from taskapp.models import Batch, Event, LlmCall, Run, Step


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


@dataclass(frozen=True)
class ModelMinute:
    model: str
    minute: datetime
    requests: int
    tokens_in: int


def agent_stats(session: Session, since: datetime) -> list[AgentStats]:
    """Steps, batches, latency percentiles, tokens, cost and 429s per agent and model."""
    ok = LlmCall.status.in_(("ok", "partial"))  # answered: a failed or lost call's latency says nothing
    calls = {
        (r.agent, r.model): r
        for r in session.execute(
            select(
                LlmCall.agent, LlmCall.model,
                func.count().label("calls"),
                func.percentile_cont(0.5).within_group(LlmCall.latency_ms).filter(ok).label("p50"),
                func.percentile_cont(0.95).within_group(LlmCall.latency_ms).filter(ok).label("p95"),
                func.coalesce(func.sum(LlmCall.tokens_in), 0).label("tokens_in"),
                func.coalesce(func.sum(LlmCall.tokens_out), 0).label("tokens_out"),
                func.coalesce(func.sum(LlmCall.cost_usd), 0).label("cost"),
                func.count().filter(LlmCall.error.like("rate_limited%")).label("rate_limited"),
            ).where(LlmCall.created_at >= since).group_by(LlmCall.agent, LlmCall.model)
        )
    }
    batches: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}  # reason -> (batches, steps)
    for agent, model, reason, n, size in session.execute(
            select(Batch.agent, Batch.model, Batch.reason, func.count(), func.sum(Batch.size))
            .where(Batch.flushed_at >= since).group_by(Batch.agent, Batch.model, Batch.reason)):
        batches.setdefault((agent, model), {})[reason] = (int(n), int(size))
    wait_ms = func.extract("epoch", Step.started_at - Step.queued_at) * 1000
    steps = session.execute(
        select(
            Step.agent, Step.model,
            func.count().filter(Step.status.in_(("succeeded", "failed"))).label("done"),
            func.count().filter(Step.status == "failed").label("failed"),
            func.avg(cast(wait_ms, Float)).filter(Step.started_at.is_not(None)).label("wait"),
            func.percentile_cont(0.5).within_group(Step.buffer_wait_ms).label("buffer_p50"),
            func.percentile_cont(0.95).within_group(Step.buffer_wait_ms).label("buffer_p95"),
        ).where(Step.queued_at >= since).group_by(Step.agent, Step.model)
    ).all()
    out = []
    for s in steps:
        c = calls.get((s.agent, s.model))
        by_reason = batches.get((s.agent, s.model), {})
        n_batches, n_batched = sum(n for n, _ in by_reason.values()), sum(size for _, size in by_reason.values())
        out.append(AgentStats(
            agent=s.agent, model=s.model, steps=s.done, steps_failed=s.failed, batches=n_batches,
            batches_by_reason={reason: n for reason, (n, _) in sorted(by_reason.items())},
            mean_batch_size=round(n_batched / n_batches, 2) if n_batches else 0.0,
            llm_calls=c.calls if c else 0,
            latency_p50_ms=_num(c.p50) if c else None, latency_p95_ms=_num(c.p95) if c else None,
            mean_wait_ms=_num(s.wait), buffer_wait_p50_ms=_num(s.buffer_p50), buffer_wait_p95_ms=_num(s.buffer_p95),
            tokens_in=int(c.tokens_in) if c else 0,
            tokens_out=int(c.tokens_out) if c else 0, cost_usd=float(c.cost) if c else 0.0,
            rate_limited=c.rate_limited if c else 0,
        ))
    return sorted(out, key=lambda a: (a.agent, a.model))


def usage_by_minute(session: Session, minutes: int = 30, now: datetime | None = None) -> list[ModelMinute]:
    """Requests and input tokens per model per minute: quota use over time."""
    now = now or datetime.now(UTC)
    minute = func.date_trunc("minute", LlmCall.created_at)
    rows = session.execute(
        select(LlmCall.model, minute.label("minute"), func.count(), func.coalesce(func.sum(LlmCall.tokens_in), 0))
        .where(and_(LlmCall.created_at >= now - timedelta(minutes=minutes), LlmCall.status != "error"))
        .group_by(LlmCall.model, minute).order_by(minute)
    ).all()
    return [ModelMinute(model, m, int(n), int(t)) for model, m, n, t in rows]


def minute_series(points: list[ModelMinute], minutes: int, now: datetime | None = None
                  ) -> dict[str, list[ModelMinute]]:
    """Per model, one point for each of the last `minutes` minutes, zero where nothing was called."""
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    slots = [end - timedelta(minutes=k) for k in range(minutes - 1, -1, -1)]
    by_model: dict[str, dict[datetime, ModelMinute]] = {}
    for p in points:
        by_model.setdefault(p.model, {})[p.minute] = p
    return {model: [seen.get(m, ModelMinute(model, m, 0, 0)) for m in slots] for model, seen in by_model.items()}


def quota_use(session: Session, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """What each model used in the last 60 s and the last 24 h (the quota dimensions)."""
    now = now or datetime.now(UTC)
    minute_ago, day_ago = now - timedelta(seconds=60), now - timedelta(days=1)
    rows = session.execute(
        select(
            LlmCall.model,
            func.count().filter(LlmCall.created_at >= minute_ago),
            func.coalesce(func.sum(LlmCall.tokens_in).filter(LlmCall.created_at >= minute_ago), 0),
            func.count(),
        ).where(LlmCall.created_at >= day_ago, LlmCall.status != "error").group_by(LlmCall.model)
    ).all()
    return {m: {"requests_last_minute": rpm, "input_tokens_last_minute": int(tpm), "requests_last_day": rpd}
            for m, rpm, tpm, rpd in rows}


def run_counts(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())


def quota_waits(session: Session, since: datetime) -> dict[str, int]:
    """How many times steps were told to wait for quota, per model."""
    model = Event.data["model"].astext
    return dict(session.execute(
        select(model, func.count()).where(Event.type == "quota.wait", Event.created_at >= since).group_by(model)
    ).all())


def snapshot(session: Session, queue_depths: dict[str, int | None], window_s: int,
             gate_usage: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything `GET /api/metrics` reports."""
    since = datetime.now(UTC) - timedelta(seconds=window_s)
    waits = quota_waits(session, since)
    quota = {model: {**usage, "waits": waits.get(model, 0)} for model, usage in (gate_usage or {}).items()}
    return {
        "window_s": window_s,
        "agents": [asdict(a) for a in agent_stats(session, since)],
        "quota": quota,
        "quota_use": quota_use(session),
        "runs": run_counts(session),
        "queues": queue_depths,
    }


def _num(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
