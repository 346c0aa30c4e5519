"""The dashboard's numbers over a chosen range: time series per bucket, what batching saved,
and what waits now.

Read from Postgres like the rest of the metrics (taskapp.store.metrics), scoped the same
way: a team sees its own steps, calls and costs; operators the whole fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from taskapp.store.metrics import FLEET, Scope, team_batch_ids
from taskapp.store.models import Batch, Event, LlmCall, Run, Step


@dataclass(frozen=True)
class Range:
    """A chosen range of the dashboard: how far back, and how wide each point's bucket is."""

    name: str
    seconds: int
    bucket_s: int


RANGES = {
    "15m": Range("15m", 15 * 60, 30),
    "1h": Range("1h", 3600, 60),
    "6h": Range("6h", 6 * 3600, 5 * 60),
    "24h": Range("24h", 86400, 15 * 60),
    "7d": Range("7d", 7 * 86400, 2 * 3600),
}


def _bucket(column: Any, bucket_s: int) -> Any:
    """The start of the bucket a timestamp falls in, as epoch seconds."""
    return func.floor(func.extract("epoch", column) / bucket_s) * bucket_s


def _team_steps(scope: Scope) -> Any:
    return Step.run_id.in_(select(Run.id).where(Run.team_id == scope.team_id))


def time_series(session: Session, rng: Range, scope: Scope = FLEET, now: datetime | None = None) -> dict[str, Any]:
    """Per bucket of the range (oldest first; `t` in epoch seconds): steps and Gemini calls per
    minute, mean batch size (steps per call), latency p50/p95 of calls (ms) and of whole runs (s),
    cost per hour, and per model requests and input tokens per minute. A team sees its own steps,
    the calls that carried them (each counted once for it) and its own share of their cost."""
    now = now or datetime.now(UTC)
    step_s = rng.bucket_s
    end = int(now.timestamp()) // step_s * step_s
    start = end - rng.seconds + step_s
    since = datetime.fromtimestamp(start, UTC)
    slots = list(range(start, end + 1, step_s))
    per_minute, per_hour = 60 / step_s, 3600 / step_s

    def by_bucket(rows: Any) -> dict[int, tuple[Any, ...]]:
        return {int(r[0]): tuple(r[1:]) for r in rows}

    step_filter = [Step.finished_at >= since, Step.status.in_(("succeeded", "failed"))]
    call_filter = [LlmCall.created_at >= since]
    batch_filter = [Batch.flushed_at >= since]
    run_filter = [Run.finished_at >= since]
    if not scope.fleet:
        step_filter.append(_team_steps(scope))
        call_filter.append(LlmCall.batch_id.in_(team_batch_ids(scope, since - timedelta(hours=1))))
        run_filter.append(Run.team_id == scope.team_id)
    b = _bucket(Step.finished_at, step_s)
    steps = by_bucket(
        session.execute(
            select(b, func.count(), func.coalesce(func.sum(Step.cost_usd), 0)).where(*step_filter).group_by(b)
        )
    )
    b = _bucket(LlmCall.created_at, step_s)
    ok = LlmCall.status.in_(("ok", "partial"))
    calls = by_bucket(
        session.execute(
            select(
                b,
                func.count(),
                func.percentile_cont(0.5).within_group(LlmCall.latency_ms).filter(ok),
                func.percentile_cont(0.95).within_group(LlmCall.latency_ms).filter(ok),
                func.coalesce(func.sum(LlmCall.cost_usd), 0),
            )
            .where(*call_filter)
            .group_by(b)
        )
    )
    b = _bucket(Batch.flushed_at, step_s)
    if scope.fleet:
        sizes = by_bucket(session.execute(select(b, func.avg(Batch.size)).where(*batch_filter).group_by(b)))
    else:  # the team's own steps per batch that carried them
        per_batch = (
            select(b.label("t"), func.count().label("n"))
            .join(Step, Step.batch_id == Batch.id)
            .where(*batch_filter, _team_steps(scope))
            .group_by(b, Batch.id)
            .subquery()
        )
        sizes = by_bucket(session.execute(select(per_batch.c.t, func.avg(per_batch.c.n)).group_by(per_batch.c.t)))
    b = _bucket(Run.finished_at, step_s)
    run_s = func.extract("epoch", Run.finished_at - Run.created_at)
    runs = by_bucket(
        session.execute(
            select(
                b,
                func.percentile_cont(0.5).within_group(run_s),
                func.percentile_cont(0.95).within_group(run_s),
            )
            .where(*run_filter, Run.status == "succeeded")
            .group_by(b)
        )
    )
    b = _bucket(LlmCall.created_at, step_s)
    model_rows = session.execute(
        select(LlmCall.model, b, func.count(), func.coalesce(func.sum(LlmCall.tokens_in), 0))
        .where(*call_filter, LlmCall.status != "error")
        .group_by(LlmCall.model, b)
    )
    models: dict[str, dict[int, tuple[int, int]]] = {}
    for model, t, n, tokens in model_rows:
        models.setdefault(model, {})[int(t)] = (int(n), int(tokens))

    def col(source: dict[int, tuple[Any, ...]], i: int, scale: float = 1.0, empty: float | None = 0.0) -> list:
        out = []
        for t in slots:
            value = source.get(t, (None,) * 8)[i]
            out.append(empty if value is None else round(float(value) * scale, 6))
        return out

    cost_source = steps if not scope.fleet else {t: (v[3],) for t, v in calls.items()}
    return {
        "range": rng.name,
        "bucket_s": step_s,
        "t": slots,
        "steps_per_min": col(steps, 0, per_minute),
        "calls_per_min": col(calls, 0, per_minute),
        "mean_batch_size": col(sizes, 0, empty=None),
        "call_p50_ms": col(calls, 1, empty=None),
        "call_p95_ms": col(calls, 2, empty=None),
        "run_p50_s": col(runs, 0, empty=None),
        "run_p95_s": col(runs, 1, empty=None),
        "cost_per_hour": col(cost_source, 1 if not scope.fleet else 0, per_hour),
        "models": {
            model: {
                "requests_per_min": [round(seen.get(t, (0, 0))[0] * per_minute, 3) for t in slots],
                "input_tokens_per_min": [round(seen.get(t, (0, 0))[1] * per_minute, 1) for t in slots],
            }
            for model, seen in sorted(models.items())
        },
    }


def batching_savings(session: Session, since: datetime, scope: Scope = FLEET) -> dict[str, Any]:
    """What batching saved since `since`, against one Gemini call per step: calls (exact: steps that
    went to Gemini less the calls that carried them), and dollars (an estimate: each step priced at
    the mean cost of that agent and model's one-step calls in the range; agents with none are left
    out of the dollars and counted in `agents_without_estimate`)."""
    ok = LlmCall.status.in_(("ok", "partial"))
    alone = {
        (agent, model): float(cost)
        for agent, model, cost in session.execute(
            select(LlmCall.agent, LlmCall.model, func.avg(LlmCall.cost_usd))
            .where(LlmCall.created_at >= since, LlmCall.step_count == 1, ok)
            .group_by(LlmCall.agent, LlmCall.model)
        )
    }
    step_filter = [Step.batch_id.is_not(None), Step.queued_at >= since, Step.status.in_(("succeeded", "failed"))]
    if not scope.fleet:
        step_filter.append(_team_steps(scope))
    carried = session.execute(
        select(Step.agent, Step.model, func.count(), func.count(func.distinct(Step.batch_id)), func.sum(Step.cost_usd))
        .where(*step_filter)
        .group_by(Step.agent, Step.model)
    ).all()
    call_counts = dict(
        ((a, m), int(n))
        for a, m, n in session.execute(
            select(LlmCall.agent, LlmCall.model, func.count())
            .where(LlmCall.batch_id.in_(select(Step.batch_id).where(*step_filter)))
            .group_by(LlmCall.agent, LlmCall.model)
        )
    )
    steps = calls = 0
    cost = would_cost = 0.0
    missing = 0
    per_agent = []
    for agent, model, n_steps, _, spent in carried:
        made = call_counts.get((agent, model), 0)
        steps, calls = steps + int(n_steps), calls + made
        price = alone.get((agent, model))
        row: dict[str, Any] = {"agent": agent, "model": model, "steps": int(n_steps), "calls": made}
        if price is None:
            missing += 1
        else:
            cost += float(spent or 0)
            would_cost += price * int(n_steps)
            row["saved_usd"] = round(price * int(n_steps) - float(spent or 0), 6)
        per_agent.append(row)
    return {
        "steps": steps,
        "calls": calls,
        "calls_saved": steps - calls,
        "cost_usd": round(cost, 6),
        "one_call_per_step_usd": round(would_cost, 6),
        "saved_usd": round(would_cost - cost, 6),
        "agents_without_estimate": missing,
        "agents": sorted(per_agent, key=lambda r: (r["agent"], r["model"])),
    }


def current_waits(session: Session, scope: Scope = FLEET) -> dict[str, int]:
    """Steps waiting now: in batch buffers, batched and on their way, told to wait for quota,
    tool steps waiting for a worker, and calls under way."""
    waited = (
        select(Event.id)
        .where(
            Event.run_id == Step.run_id,
            Event.type == "quota.wait",
            Event.data["step_id"].astext == cast(Step.id, String),
            Event.created_at >= Step.batched_at,
        )
        .exists()
    )
    query = select(
        func.count().filter(Step.status == "queued", Step.kind == "agent"),
        func.count().filter(Step.status == "batched", ~waited),
        func.count().filter(Step.status == "batched", waited),
        func.count().filter(Step.status == "queued", Step.kind == "tool"),
        func.count().filter(Step.status == "running"),
    ).where(Step.status.in_(("queued", "batched", "running")))
    if not scope.fleet:
        query = query.where(_team_steps(scope))
    row = session.execute(query).one()
    keys = ("in_buffers", "on_their_way", "waiting_for_quota", "tools_waiting", "calls_under_way")
    return {k: int(v or 0) for k, v in zip(keys, row, strict=True)}
