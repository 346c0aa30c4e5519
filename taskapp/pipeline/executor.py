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

from sqlalchemy import (
    Integer,
    Numeric,
    String,
    Text,
    Uuid,
    bindparam,
    column,
    func,
    insert,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, sessionmaker

from taskapp.domain.agents import Agent, get_agent
from taskapp.domain.pricing import Usage, cost_usd, split_usage
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
from taskapp.store import events
from taskapp.store.claims import claim, claimable, event_order, release_steps
from taskapp.store.lost_calls import take_back_lost_call
from taskapp.store.models import PENDING_STEP_STATUSES, LlmCall, Step, of_running_run

log = logging.getLogger(__name__)
# How long a batch whose answers arrived waits for PostgreSQL to come back before giving
# up (its steps are then called again): well inside the task's soft time limit.
COMMIT_RETRY_S = 120
# A batch's answers as rows: jsonb_to_recordset(:answers) AS answers(id uuid, attempts integer, ...).
_ANSWERS = (
    func.jsonb_to_recordset(bindparam("answers", type_=JSONB))
    .table_valued(
        column("id", Uuid),
        column("attempts", Integer),
        column("status", String),
        column("output", JSONB),
        column("error", Text),
        column("llm_call_id", Uuid),
        column("tokens_in", Integer),
        column("tokens_out", Integer),
        column("cost_usd", Numeric),
        name="answers",
    )
    .render_derived(with_types=True)
)
# A batch's answers, each committed only if its claim still holds (built once: every batch runs it).
_COMMIT = (
    update(Step)
    # (the ids again, as a list: a join on the function alone is planned as a scan of steps)
    .where(
        Step.id.in_(bindparam("ids", expanding=True)),
        Step.id == _ANSWERS.c.id,
        Step.attempts == _ANSWERS.c.attempts,
        Step.status.in_(tuple(PENDING_STEP_STATUSES)),
        of_running_run(),
    )
    .values(
        status=_ANSWERS.c.status,
        output=_ANSWERS.c.output,
        error=_ANSWERS.c.error,
        finished_at=bindparam("now"),
        lease_until=None,
        batch_id=bindparam("commit_batch_id"),
        llm_call_id=_ANSWERS.c.llm_call_id,
        tokens_in=_ANSWERS.c.tokens_in,
        tokens_out=_ANSWERS.c.tokens_out,
        cost_usd=_ANSWERS.c.cost_usd,
    )
    .returning(Step.id)
)


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
        return {
            "batch_id": str(self.batch_id),
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "items": self.items,
            "run_ids": sorted(self.run_ids),
        }


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
    caller = BatchCaller(client, gate, agent, batch_id)
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
        lambda: _commit_results(factory, batch_id, steps, answers, calls, deferred, outcome.skipped, stranded_s),
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
        agent = get_agent(waiting[0].agent)
        if any(s.agent != agent.name or s.model != waiting[0].model for s in waiting):
            raise ValueError("a batch must hold steps of one agent and model")
        try:
            grant = _acquire(gate, agent, waiting, str(batch_id))
        except LlmError as exc:
            steps = claim(session, batch_id, waiting, lease_s, None)
            _commit_answers(session, steps, {str(s.id): Answer(error=str(exc)) for s in steps}, [], outcome)
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
            _commit_answers(session, steps, answers, [], outcome)
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
) -> BatchOutcome:
    """One transaction: the bill, every answered step, and the steps whose repairs must wait."""
    committed = BatchOutcome(batch_id=batch_id, skipped=skipped)
    with factory.begin() as session:
        if calls:  # the bill: one Core INSERT (the rows need no tracking)
            session.connection().execute(insert(LlmCall), [_as_row(call) for call, _ in calls])
        done = [s for s in steps if str(s.id) not in deferred.step_ids]
        _commit_answers(session, done, answers, calls, committed)
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


def _as_row(call: LlmCall) -> dict[str, object]:
    return {c.key: getattr(call, c.key) for c in LlmCall.__table__.columns if c.key != "created_at"}


def _commit_answers(
    session: Session, steps: list[Step], answers: dict[str, Answer], calls: Carried, outcome: BatchOutcome
) -> None:
    """Commit each step unless another delivery claimed it since (its attempt number moved on).

    A step re-offered but not yet called again (its lease ran out while the database was
    restarting) still takes this answer: it is paid for, and the later batch then finds
    the step no longer its own and calls nothing.
    """
    now = datetime.now(UTC)
    shares = _usage_shares(steps, answers, calls)
    last_call = {sid: row for row, sids in calls for sid in sids}
    planned: dict[uuid.UUID, tuple[Step, Answer, Usage, str | None]] = {}
    rows = []
    for step in steps:
        sid = str(step.id)
        answer = answers[sid]
        call = last_call.get(sid)
        usage = shares.get(sid, Usage(0, 0))
        error = None if answer.ok else (f"{answer.error}; raw output: {answer.raw}" if answer.raw else answer.error)
        planned[step.id] = (step, answer, usage, error)
        rows.append(
            {
                "id": sid,
                "attempts": step.attempts,
                "status": "succeeded" if answer.ok else "failed",
                "output": answer.output,
                "error": error,
                "llm_call_id": str(call.id) if call else None,
                "tokens_in": usage.tokens_in,
                "tokens_out": usage.tokens_out,
                "cost_usd": str(cost_usd(step.model, usage)),
            }
        )
    committed: list[tuple[Step, Answer, Usage, str | None]] = []
    if rows:
        # One statement for the whole batch. The rows travel as one JSON parameter, so the
        # statement is the same (and compiled once) for any size.
        done = session.execute(
            _COMMIT,
            {"answers": rows, "ids": list(planned), "now": now, "commit_batch_id": outcome.batch_id},
            execution_options={"synchronize_session": False},
        ).all()
        committed = [planned[i] for (i,) in done]
        # If the sweeper took these steps back meanwhile (this claim's lease ran out), it recorded
        # this call as lost; it is recorded here after all. Always asked (one delete by primary key):
        # a take-back that committed while this statement waited for its row locks is invisible
        # to the statement's snapshot, so the rows returned cannot tell.
        take_back_lost_call(session, outcome.batch_id, steps)
    for step, answer, usage, error in sorted(committed, key=lambda c: event_order(c[0])):
        outcome.run_ids.add(str(step.run_id))
        outcome.items[str(step.id)] = "succeeded" if answer.ok else "failed"
        if answer.ok:
            outcome.succeeded += 1
            events.record_step(
                session,
                step,
                "step.succeeded",
                batch_id=outcome.batch_id,
                tokens_in=usage.tokens_in,
                tokens_out=usage.tokens_out,
            )
        else:
            outcome.failed += 1
            events.record_step(
                session,
                step,
                "step.failed",
                batch_id=outcome.batch_id,
                error=error,
            )


def _usage_shares(steps: list[Step], answers: dict[str, Answer], calls: Carried) -> dict[str, Usage]:
    """Every call's tokens shared among the steps it carried, so per-step sums equal the bill."""
    inputs = {str(s.id): len(str(s.input)) for s in steps}
    shares: dict[str, Usage] = {}
    for row, sids in calls:
        split = split_usage(
            Usage(row.tokens_in, row.tokens_out), [inputs[s] for s in sids], [len(answers[s].raw) or 1 for s in sids]
        )
        for sid, usage in zip(sids, split, strict=True):
            prev = shares.get(sid, Usage(0, 0))
            shares[sid] = Usage(prev.tokens_in + usage.tokens_in, prev.tokens_out + usage.tokens_out)
    return shares
