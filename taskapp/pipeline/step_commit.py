"""The step commit: a batch's answers, each committed only if its claim still holds.

One conditional statement for the whole batch (status and attempt number must be as the
claim left them), so two racing deliveries commit a step once; the call's tokens (cached
ones too) and its cost are shared out over the steps it carried, the cost in 1e-8 dollar
units so the steps' costs add up exactly to what the calls cost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Integer, Numeric, String, Text, Uuid, bindparam, column, func, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from taskapp.domain.pricing import DEFAULT_TABLE, PriceTable, Usage, exact_cost, split_cost, split_usage
from taskapp.domain.prompts import Answer
from taskapp.pipeline.calls import Carried
from taskapp.store import events
from taskapp.store.claims import event_order
from taskapp.store.lost_calls import take_back_lost_call
from taskapp.store.models import PENDING_STEP_STATUSES, LlmCall, Step, of_running_run

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
        column("tokens_cached", Integer),
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
        tokens_cached=_ANSWERS.c.tokens_cached,
        cost_usd=_ANSWERS.c.cost_usd,
    )
    .returning(Step.id)
)


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


def as_row(call: LlmCall) -> dict[str, object]:
    return {c.key: getattr(call, c.key) for c in LlmCall.__table__.columns if c.key != "created_at"}


def commit_answers(
    session: Session,
    steps: list[Step],
    answers: dict[str, Answer],
    calls: Carried,
    outcome: BatchOutcome,
    prices: PriceTable = DEFAULT_TABLE,
) -> None:
    """Commit each step unless another delivery claimed it since (its attempt number moved on).

    A step re-offered but not yet called again (its lease ran out while the database was
    restarting) still takes this answer: it is paid for, and the later batch then finds
    the step no longer its own and calls nothing.
    """
    now = datetime.now(UTC)
    shares, costs = bill_shares(steps, answers, calls, prices)
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
                "tokens_cached": usage.tokens_cached,
                "cost_usd": str(costs.get(sid, Decimal(0))),
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


def bill_shares(
    steps: list[Step], answers: dict[str, Answer], calls: Carried, prices: PriceTable = DEFAULT_TABLE
) -> tuple[dict[str, Usage], dict[str, Decimal]]:
    """Every call's tokens and cost shared among the steps it carried, so per-step sums equal the bill.

    Tokens go by prompt and answer size (`split_usage`); the call's recorded cost goes by what
    each step's tokens would cost at the model's prices, apportioned in 1e-8 dollar units, so a
    step's cost is never rounded on its own and the steps of a call add up to exactly its cost.
    """
    inputs = {str(s.id): len(str(s.input)) for s in steps}
    shares: dict[str, Usage] = {}
    costs: dict[str, Decimal] = {}
    for row, sids in calls:
        split = split_usage(
            Usage(row.tokens_in, row.tokens_out, row.tokens_cached or 0),
            [inputs[s] for s in sids],
            [len(answers[s].raw) or 1 for s in sids],
        )
        price = prices.price(row.model)
        parts = split_cost(Decimal(row.cost_usd), [exact_cost(price, u) for u in split])
        for sid, usage, part in zip(sids, split, parts, strict=True):
            shares[sid] = shares.get(sid, Usage(0, 0)) + usage
            costs[sid] = costs.get(sid, Decimal(0)) + part
    return shares, costs
