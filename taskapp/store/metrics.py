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

from sqlalchemy import Float, Select, String, and_, cast, func, select
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


def _team_batch_ids(scope: Scope, since: datetime) -> Select[uuid.UUID | None]:
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
        call_filter.append(LlmCall.batch_id.in_(_team_batch_ids(scope, since)))
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


# --- Time series for the dashboard: one value per bucket of `bucket_s` seconds over a range ---


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
        call_filter.append(LlmCall.batch_id.in_(_team_batch_ids(scope, since - timedelta(hours=1))))
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
