"""Executing a batch of steps: claim, one Gemini call, per-step commit (taskapp.pipeline.step_commit).

Idempotent by construction. A step is claimed with a lease before its call; a
delivery that finds it committed, or in flight under a live lease, does nothing.
Results are committed with a conditional update on the claim (status and attempt
number), so two racing deliveries commit once. The call is billed once per
request, in `llm_calls`, whoever wins.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    insert,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from taskapp.domain.agents import Agent
from taskapp.domain.pricing import DEFAULT_TABLE, PriceTable
from taskapp.domain.prompts import Answer, prompt_tokens
from taskapp.domain.retry import after_call_error
from taskapp.hotstate.quota_gate import Grant, QuotaGate
from taskapp.llm.gemini import GeminiClient, LlmError
from taskapp.outages import retry_database
from taskapp.pipeline.calls import (
    BatchCaller,
    Carried,
    Deferred,
    QuotaWait,
    after_quota_error,
)
from taskapp.pipeline.leases import LeaseKeeper
from taskapp.pipeline.step_commit import BatchOutcome, as_row, commit_answers
from taskapp.store import events
from taskapp.store.claims import claim, claimable, event_order, release_steps
from taskapp.store.models import LlmCall, Step
from taskapp.store.workflows import agent_of_step

log = logging.getLogger(__name__)
# How long a batch whose answers arrived waits for PostgreSQL to come back before giving
# up (its steps are then called again): well inside the task's soft time limit.
COMMIT_RETRY_S = 120


class RetryLater(Exception):
    """The call failed in a way worth retrying; the claimed steps were released."""

    def __init__(self, error: LlmError, delay_s: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay_s = delay_s


def execute_batch(
    factory: sessionmaker[Session],
    client: GeminiClient,
    batch_id: uuid.UUID,
    step_ids: list[str],
    *,
    lease_s: float,
    stranded_s: float,
    retry_delay_s: float = 1.0,
    give_up: bool = False,
    gate: QuotaGate | None = None,
    max_attempts: int | None = None,
    prices: PriceTable = DEFAULT_TABLE,
) -> BatchOutcome:
    """Run one batch end to end: claim its steps (one transaction), call Gemini, commit the answers
    (another); a failed call releases or fails the steps (a third).

    Raises QuotaWait when the gate (or a 429) says wait, RetryLater after a failure worth
    retrying; either way the steps stay this batch's, for the retry to claim.
    """
    outcome = BatchOutcome(batch_id=batch_id)
    ids = [uuid.UUID(s) for s in step_ids]
    claimed = _claim(
        factory, batch_id, ids, outcome, gate=gate, lease_s=lease_s, stranded_s=stranded_s, max_attempts=max_attempts
    )
    if claimed is None:
        return outcome
    agent, steps, grant = claimed
    outcome.skipped = len(ids) - len(steps)
    if not steps:
        if gate and grant:
            gate.finish(grant, tokens_in=None, outcome="unused")
        return outcome
    log.info(
        "calling %s for %d step(s)", steps[0].model, len(steps), extra={"agent": agent.name, "batch_id": str(batch_id)}
    )
    caller = BatchCaller(client, gate, agent, batch_id, prices)
    try:
        with LeaseKeeper(factory, steps, lease_s):
            answers, calls, deferred = caller.call_with_repairs(steps, grant)
    except LlmError as exc:
        return _after_call_error(
            factory,
            agent,
            batch_id,
            steps,
            exc,
            outcome,
            gate=gate,
            give_up=give_up,
            retry_delay_s=retry_delay_s,
            stranded_s=stranded_s,
        )
    # The answers are paid for: a database restart now is waited out, not turned into a second call.
    outcome = retry_database(
        lambda: _commit_results(
            factory, batch_id, steps, answers, calls, deferred, outcome.skipped, stranded_s, prices
        ),
        budget_s=COMMIT_RETRY_S,
        what=f"committing batch {batch_id}",
    )
    if deferred.step_ids:
        raise QuotaWait(deferred.delay_s, deferred.reason)
    return outcome


def _claim(
    factory: sessionmaker[Session],
    batch_id: uuid.UUID,
    ids: list[uuid.UUID],
    outcome: BatchOutcome,
    *,
    gate: QuotaGate | None,
    lease_s: float,
    stranded_s: float,
    max_attempts: int | None,
) -> tuple[Agent, list[Step], Grant | None] | None:
    """One transaction: lock the batch's steps, pass the gate, claim them.

    None when there is nothing left to call (none waiting, or the batch can never fit the
    model's quota and was failed, clearly). Raises QuotaWait, noted on each step, when the
    gate says wait.
    """
    with factory.begin() as session:
        waiting = claimable(session, batch_id, ids)
        if not waiting:
            outcome.skipped = len(ids)
            return None
        agent = agent_of_step(session, waiting[0])
        if any(s.lane != waiting[0].lane or s.model != waiting[0].model for s in waiting):
            raise ValueError("a batch must hold steps of one lane (agent version and team) and model")
        try:
            grant = _acquire(gate, agent, waiting, str(batch_id))
        except LlmError as exc:
            steps = claim(session, batch_id, waiting, lease_s, None)
            commit_answers(session, steps, {str(s.id): Answer(error=str(exc)) for s in steps}, [], outcome)
            return None
        if grant is not None and not grant.granted:
            wait = _note_quota_wait(session, waiting, grant, stranded_s)
        else:
            return agent, claim(session, batch_id, waiting, lease_s, max_attempts), grant
    raise wait  # after the transaction committed the wait's notes


def _after_call_error(
    factory: sessionmaker[Session],
    agent: Agent,
    batch_id: uuid.UUID,
    steps: list[Step],
    exc: LlmError,
    outcome: BatchOutcome,
    *,
    gate: QuotaGate | None,
    give_up: bool,
    retry_delay_s: float,
    stranded_s: float,
) -> BatchOutcome:
    """Record the failed call (429s too), then wait, retry or fail as `after_call_error` decides."""
    model = steps[0].model
    choice = after_call_error(
        quota_delay_s=after_quota_error(gate, model, exc),
        retryable=exc.retryable,
        retry_after_s=exc.retry_after_s,
        give_up=give_up,
        default_delay_s=retry_delay_s,
    )
    with factory.begin() as session:
        _record_failed_call(session, agent, model, batch_id, len(steps), exc)
        if choice.action == "fail":
            answers = {str(s.id): Answer(error=f"Gemini call failed ({exc.kind}): {exc}") for s in steps}
            commit_answers(session, steps, answers, [], outcome)
            return outcome
        release_steps(session, steps, exc, choice.delay_s, stranded_s)
    if choice.action == "wait":
        raise QuotaWait(choice.delay_s, exc.kind) from exc
    raise RetryLater(exc, choice.delay_s) from exc


def _commit_results(
    factory: sessionmaker[Session],
    batch_id: uuid.UUID,
    steps: list[Step],
    answers: dict[str, Answer],
    calls: Carried,
    deferred: Deferred,
    skipped: int,
    stranded_s: float,
    prices: PriceTable = DEFAULT_TABLE,
) -> BatchOutcome:
    """One transaction: the bill, every answered step, and the steps whose repairs must wait."""
    committed = BatchOutcome(batch_id=batch_id, skipped=skipped)
    with factory.begin() as session:
        if calls:  # the bill: one Core INSERT (the rows need no tracking)
            session.connection().execute(insert(LlmCall), [as_row(call) for call, _ in calls])
        done = [s for s in steps if str(s.id) not in deferred.step_ids]
        commit_answers(session, done, answers, calls, committed, prices)
        if deferred.step_ids:
            # Repairs the gate could not serve now: the retry asks for these steps again.
            release_steps(
                session,
                [s for s in steps if str(s.id) in deferred.step_ids],
                LlmError("rate_limited", deferred.reason),
                deferred.delay_s,
                stranded_s,
            )
    return committed


def _acquire(gate: QuotaGate | None, agent: Agent, steps: list[Step], ticket: str) -> Grant | None:
    """Ask the quota gate for the batch's call; raises LlmError when it can never fit."""
    if gate is None:
        return None
    grant = gate.acquire(steps[0].model, ticket, prompt_tokens(agent, [(str(s.id), s.input) for s in steps]))
    if grant.impossible:
        raise LlmError(
            "client",
            f"a batch of {len(steps)} step(s) needs more input tokens than the model's "
            f"TPM quota allows; lower BATCH_MAX_SIZE for {agent.name}",
        )
    return grant


def _note_quota_wait(session: Session, steps: list[Step], grant: Grant, stranded_s: float) -> QuotaWait:
    """The gate said wait: keep the steps the batch's past the wait, say so on each one."""
    delay_s = grant.wait_ms / 1000
    deadline = datetime.now(UTC) + timedelta(seconds=delay_s + stranded_s)
    session.execute(
        update(Step).where(Step.id.in_([s.id for s in steps]), Step.status == "batched").values(lease_until=deadline)
    )
    for step in sorted(steps, key=event_order):
        events.record_step(
            session,
            step,
            "quota.wait",
            model=step.model,
            batch_id=step.batch_id,
            reason=grant.reason,
            wait_s=round(delay_s, 3),
            ahead=grant.ahead,
        )
    return QuotaWait(delay_s, grant.reason)


def _record_failed_call(
    session: Session, agent: Agent, model: str, batch_id: uuid.UUID, size: int, exc: LlmError
) -> None:
    session.add(
        LlmCall(
            batch_id=batch_id,
            agent=agent.name,
            model=model,
            step_count=size,
            status="error",
            error=f"{exc.kind}: {exc}"[:2000],
        )
    )
