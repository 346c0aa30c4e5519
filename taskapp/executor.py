"""Executing a batch of steps: claim, one Gemini call, per-step commit.

Idempotent by construction. A step is claimed with a lease before its call; a
delivery that finds it committed, or in flight under a live lease, does nothing.
Results are committed with a conditional update on the claim (status and attempt
number), so two racing deliveries commit once. The call is billed once per
request, in `llm_calls`, whoever wins.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from taskapp import events
from taskapp.accounting import Usage, cost_usd, split_usage
from taskapp.agents import Agent, get_agent
from taskapp.llm.batch_prompt import (
    Answer,
    batch_schema,
    build_prompt,
    parse_answers,
    system_instruction,
)
from taskapp.llm.gemini import GeminiClient, LlmError
from taskapp.models import LlmCall, Run, Step

log = logging.getLogger(__name__)
MAX_REPAIRS = 2


class RetryLater(Exception):
    """The call failed in a way worth retrying; the claimed steps were released."""

    def __init__(self, error: LlmError, delay_s: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay_s = delay_s


@dataclass
class BatchOutcome:
    batch_id: uuid.UUID
    run_ids: set[str] = field(default_factory=set)
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    items: dict[str, str] = field(default_factory=dict)  # step id -> succeeded | failed (committed here)

    def as_result(self) -> dict:
        """What a chord header returns: per-item outcomes, never an exception for a bad item."""
        return {"batch_id": str(self.batch_id), "succeeded": self.succeeded, "failed": self.failed,
                "skipped": self.skipped, "items": self.items, "run_ids": sorted(self.run_ids)}


def claim_steps(session: Session, batch_id: uuid.UUID, step_ids: list[uuid.UUID], lease_s: float) -> list[Step]:
    """Mark this batch's steps (of live runs) as running under a lease; return them.

    A step counts as this batch's only while its `batch_id` says so: once the sweeper
    re-offered it to another batch, a late delivery of this one finds nothing to do.
    A step running under an expired lease (its worker died) is taken over.
    """
    # The flusher publishes a batch's message before it commits the batch: wait for its
    # commit (or rollback) here. An UPDATE alone would not wait: it skips rows whose last
    # committed version does not match, and this batch's steps would look like no one's.
    session.execute(select(Step.id).where(Step.id.in_(step_ids)).order_by(Step.id).with_for_update())
    now = datetime.now(UTC)
    live_runs = select(Run.id).where(Run.status == "running")
    claimed = session.scalars(
        update(Step)
        .where(
            Step.id.in_(step_ids),
            Step.batch_id == batch_id,
            Step.run_id.in_(live_runs),
            (Step.status == "batched") | ((Step.status == "running") & (Step.lease_until < now)),
        )
        .values(status="running", attempts=Step.attempts + 1, started_at=now,
                lease_until=now + timedelta(seconds=lease_s))
        .returning(Step),
        execution_options={"synchronize_session": False},
    ).all()
    claimed = sorted(claimed, key=_event_order)
    for step in claimed:
        events.record(session, step.run_id, "step.started", step_id=step.id, seq=step.seq, agent=step.agent,
                      batch_id=batch_id, attempt=step.attempts)
    return list(claimed)


def _event_order(step: Step) -> tuple[str, int]:
    # Per-run event locks are always taken in run-id order: two batches sharing runs never deadlock.
    return (str(step.run_id), step.seq)


def release_steps(session: Session, steps: list[Step], error: LlmError, delay_s: float, stranded_s: float) -> None:
    """Give claimed steps back to their batch after a retryable failure (its retry will claim them)."""
    deadline = datetime.now(UTC) + timedelta(seconds=delay_s + stranded_s)
    released = []
    for step in steps:
        result = session.execute(
            update(Step)
            .where(Step.id == step.id, Step.status == "running", Step.attempts == step.attempts)
            .values(status="batched", lease_until=deadline)
        )
        if result.rowcount:
            released.append(step)
    for step in released:
        events.record(session, step.run_id, "step.retrying", step_id=step.id, seq=step.seq,
                      agent=step.agent, batch_id=step.batch_id, reason=error.kind, delay_s=round(delay_s, 3))


def execute_batch(factory: sessionmaker[Session], client: GeminiClient, batch_id: uuid.UUID, step_ids: list[str],
                  *, lease_s: float, stranded_s: float, retry_delay_s: float = 1.0,
                  give_up: bool = False) -> BatchOutcome:
    """Run one batch end to end. Raises RetryLater when the call should be tried again."""
    outcome = BatchOutcome(batch_id=batch_id)
    ids = [uuid.UUID(s) for s in step_ids]
    with factory.begin() as session:
        steps = claim_steps(session, batch_id, ids, lease_s)
    outcome.skipped = len(ids) - len(steps)
    if not steps:
        return outcome
    agent = get_agent(steps[0].agent)
    if any(s.agent != agent.name or s.model != steps[0].model for s in steps):
        raise ValueError("a batch must hold steps of one agent and model")
    log.info("calling %s for %d step(s)", agent.model, len(steps),
             extra={"agent": agent.name, "batch_id": str(outcome.batch_id)})
    try:
        answers, calls = _call_with_repairs(client, agent, steps, outcome.batch_id)
    except LlmError as exc:
        with factory.begin() as session:
            if exc.retryable and not give_up:
                release_steps(session, steps, exc, retry_delay_s if exc.retry_after_s is None else exc.retry_after_s,
                              stranded_s)
            else:
                _record_failed_call(session, agent, steps[0].model, outcome.batch_id, len(steps), exc)
                answers = {str(s.id): Answer(error=f"Gemini call failed ({exc.kind}): {exc}") for s in steps}
                _commit_answers(session, steps, answers, [], outcome)
                return outcome
        raise RetryLater(exc, exc.retry_after_s or retry_delay_s) from exc
    with factory.begin() as session:
        session.add_all(row for row, _ in calls)
        session.flush()
        _commit_answers(session, steps, answers, calls, outcome)
    return outcome


Carried = list[tuple[LlmCall, list[str]]]  # each call with the step ids it carried


def _call_with_repairs(client: GeminiClient, agent: Agent, steps: list[Step],
                       batch_id: uuid.UUID) -> tuple[dict[str, Answer], Carried]:
    """One call for the batch; each step it answered badly gets up to two repair calls of its own."""
    by_id = {str(s.id): s for s in steps}
    answers, call = _call(client, agent, steps, batch_id)
    calls = [call]
    for sid, answer in list(answers.items()):
        repairs = 0
        while not answer.ok and repairs < MAX_REPAIRS:
            repairs += 1
            fixed, repair_call = _call(client, agent, [by_id[sid]], batch_id, repair=answer.error)
            calls.append(repair_call)
            answer = fixed[sid]
        answers[sid] = answer
    return answers, calls


def _call(client: GeminiClient, agent: Agent, steps: list[Step], batch_id: uuid.UUID,
          repair: str | None = None) -> tuple[dict[str, Answer], tuple[LlmCall, list[str]]]:
    items = [(str(s.id), s.input) for s in steps]
    response = client.generate(
        model=steps[0].model,
        system_instruction=system_instruction(agent),
        prompt=build_prompt(items, repair=repair),
        response_schema=batch_schema(agent),
        temperature=agent.temperature,
        max_output_tokens=agent.max_output_tokens * len(items),
    )
    answers = parse_answers(response.text, agent, [sid for sid, _ in items])
    row = LlmCall(batch_id=batch_id, agent=agent.name, model=steps[0].model, step_count=len(items),
                  status="ok" if all(a.ok for a in answers.values()) else "partial",
                  tokens_in=response.usage.tokens_in, tokens_out=response.usage.tokens_out,
                  latency_ms=response.latency_ms, cost_usd=cost_usd(steps[0].model, response.usage))
    row.id = uuid.uuid4()
    return answers, (row, [sid for sid, _ in items])


def _record_failed_call(session: Session, agent: Agent, model: str, batch_id: uuid.UUID, size: int,
                        exc: LlmError) -> None:
    session.add(LlmCall(batch_id=batch_id, agent=agent.name, model=model, step_count=size, status="error",
                        error=f"{exc.kind}: {exc}"[:2000]))


def _commit_answers(session: Session, steps: list[Step], answers: dict[str, Answer],
                    calls: Carried, outcome: BatchOutcome) -> None:
    """Commit each step under its claim; a step someone else took over is left to them."""
    now = datetime.now(UTC)
    shares = _usage_shares(steps, answers, calls)
    last_call = {sid: row for row, sids in calls for sid in sids}
    committed: list[tuple[Step, Answer, Usage, str | None]] = []
    for step in steps:
        sid = str(step.id)
        answer = answers[sid]
        call = last_call.get(sid)
        usage = shares.get(sid, Usage(0, 0))
        status = "succeeded" if answer.ok else "failed"
        error = None if answer.ok else (f"{answer.error}; raw output: {answer.raw}" if answer.raw else answer.error)
        result = session.execute(
            update(Step)
            .where(Step.id == step.id, Step.status == "running", Step.attempts == step.attempts,
                   Step.run_id.in_(select(Run.id).where(Run.status == "running")))
            .values(status=status, output=answer.output, error=error, finished_at=now, lease_until=None,
                    llm_call_id=call.id if call else None,
                    tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
                    cost_usd=cost_usd(step.model, usage))
        )
        if result.rowcount:
            committed.append((step, answer, usage, error))
    for step, answer, usage, error in sorted(committed, key=lambda c: _event_order(c[0])):
        outcome.run_ids.add(str(step.run_id))
        outcome.items[str(step.id)] = "succeeded" if answer.ok else "failed"
        if answer.ok:
            outcome.succeeded += 1
            events.record(session, step.run_id, "step.succeeded", step_id=step.id, seq=step.seq,
                          agent=step.agent, batch_id=outcome.batch_id, tokens_in=usage.tokens_in,
                          tokens_out=usage.tokens_out)
        else:
            outcome.failed += 1
            events.record(session, step.run_id, "step.failed", step_id=step.id, seq=step.seq,
                          agent=step.agent, batch_id=outcome.batch_id, error=error)


def _usage_shares(steps: list[Step], answers: dict[str, Answer], calls: Carried) -> dict[str, Usage]:
    """Every call's tokens shared among the steps it carried, so per-step sums equal the bill."""
    inputs = {str(s.id): len(str(s.input)) for s in steps}
    shares: dict[str, Usage] = {}
    for row, sids in calls:
        split = split_usage(Usage(row.tokens_in, row.tokens_out), [inputs[s] for s in sids],
                            [len(answers[s].raw) or 1 for s in sids])
        for sid, usage in zip(sids, split, strict=True):
            prev = shares.get(sid, Usage(0, 0))
            shares[sid] = Usage(prev.tokens_in + usage.tokens_in, prev.tokens_out + usage.tokens_out)
    return shares
