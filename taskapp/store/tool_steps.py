"""Tool steps in PostgreSQL: claiming one for a call, giving it back for a retry, committing its
result, and finding those a lost message or a dead worker left behind.

Like agent steps (taskapp.store.claims), a tool step is claimed under a lease before its call
(status `running`, attempt number + 1), only while it is `queued`, or `running` under a lease
that ran out; its result commits only if that claim still holds (status and attempt), so a
message delivered twice runs the tool once and two racing deliveries commit once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from taskapp.domain.agents import ToolSpec
from taskapp.domain.tool_calls import Verdict
from taskapp.store import events
from taskapp.store.models import Run, Step, of_running_run
from taskapp.store.workflows import definition_of_run

TOOL_STEP = "tool"
BATCH_LIMIT = 500  # rows per sweep


@dataclass(frozen=True)
class ToolCallMessage:
    """What a `run_tool` message needs: the step, and the time limit its tool runs under."""

    step_id: str
    timeout_s: float


def lock_claimable(session: Session, step_id: uuid.UUID, now: datetime | None = None) -> Step | None:
    """The tool step, locked, if a delivery may claim it now: `queued`, or `running` under an
    expired lease (its worker died), and its run still running. None: nothing to do."""
    now = now or datetime.now(UTC)
    step = session.scalar(
        select(Step)
        .where(Step.id == step_id, Step.kind == TOOL_STEP, of_running_run())
        .with_for_update(of=Step)
        .execution_options(populate_existing=True)
    )
    if step is None:
        return None
    if step.status == "queued":
        return step
    if step.status == "running" and step.lease_until is not None and step.lease_until < now:
        return step
    return None


def tool_spec_of(session: Session, step: Step) -> ToolSpec | None:
    """The tool's policy as the run's pinned definition snapshotted it."""
    run = session.get(Run, step.run_id)
    assert run is not None
    return definition_of_run(session, run).tools.get(step.agent)


def claim(session: Session, step: Step, lease_s: float) -> Step:
    """Claim a step `lock_claimable` locked in this transaction: running, under a lease, one more attempt."""
    now = datetime.now(UTC)
    step.status = "running"
    step.attempts += 1
    step.started_at = now
    step.lease_until = now + timedelta(seconds=lease_s)
    session.flush()
    events.record_step(session, step, "step.started", attempt=step.attempts, tool=step.agent)
    return step


def finish(session: Session, step: Step, verdict: Verdict, *, now: datetime | None = None) -> bool:
    """Commit the call's outcome if the claim still holds; False: another delivery moved on."""
    status = _status(verdict)
    if not _update_claimed(
        session,
        step,
        status=status,
        output=verdict.output,
        error=verdict.error if status == "failed" else None,
        finished_at=now or datetime.now(UTC),
        lease_until=None,
    ):
        return False
    _record_outcome(session, step, verdict)
    return True


def finish_unclaimed(session: Session, step: Step, verdict: Verdict) -> None:
    """Commit an outcome decided without a call (every attempt used up) on a step `lock_claimable` locked."""
    step.status = _status(verdict)
    step.output = verdict.output
    step.error = verdict.error if step.status == "failed" else None
    step.finished_at = datetime.now(UTC)
    step.lease_until = None
    session.flush()
    _record_outcome(session, step, verdict)


def _status(verdict: Verdict) -> str:
    return "failed" if verdict.action == "fail" else "succeeded"


def _record_outcome(session: Session, step: Step, verdict: Verdict) -> None:
    """step.succeeded / step.failed, shaped as an agent step's (no batch, no tokens) plus the tool's name."""
    if verdict.action == "fail":
        events.record_step(session, step, "step.failed", batch_id=None, error=verdict.error, tool=step.agent)
        return
    fed_back = (verdict.output or {}).get("error")
    extra: dict[str, Any] = {"error": fed_back} if fed_back else {}
    events.record_step(
        session, step, "step.succeeded", batch_id=None, tokens_in=0, tokens_out=0, tool=step.agent, **extra
    )


def release_for_retry(session: Session, step: Step, verdict: Verdict, stranded_s: float) -> bool:
    """Give the claim back (`queued`) for the retry message; its lease keeps the sweeper off
    until the retry is due. False: the claim was no longer this delivery's."""
    deadline = datetime.now(UTC) + timedelta(seconds=verdict.retry_in_s + stranded_s)
    if not _update_claimed(session, step, status="queued", lease_until=deadline):
        return False
    events.record_step(
        session,
        step,
        "step.retrying",
        reason=verdict.error,
        delay_s=round(verdict.retry_in_s, 3),
        attempt=step.attempts,
        tool=step.agent,
    )
    return True


def _update_claimed(session: Session, step: Step, **values: Any) -> bool:
    result = session.execute(
        update(Step)
        .where(Step.id == step.id, Step.status == "running", Step.attempts == step.attempts, of_running_run())
        .values(**values),
        execution_options={"synchronize_session": False},
    )
    return bool(cast(CursorResult[Any], result).rowcount)


def take_back_stale(
    session: Session, now: datetime, *, queued_after_s: float, leases_too: bool = True
) -> list[ToolCallMessage]:
    """Tool steps whose message is lost: `queued` for `queued_after_s` (or past a retry's lease)
    without a claim, or (`leases_too`) `running` past their lease (their worker died). Both are
    to be sent again; each gets a fresh lease, so the next sweep leaves them to the message just
    sent. Rows a claim holds right now are skipped."""
    waited = func.coalesce(Step.lease_until, Step.queued_at + timedelta(seconds=queued_after_s))
    lost = (Step.status == "queued") & (waited < now)
    if leases_too:
        lost = lost | ((Step.status == "running") & (Step.lease_until < now))
    rows = session.scalars(
        select(Step)
        .where(
            Step.kind == TOOL_STEP,
            of_running_run(),
            lost,
        )
        .order_by(Step.id)
        .limit(BATCH_LIMIT)
        .with_for_update(of=Step, skip_locked=True)
    ).all()
    messages = []
    for step in sorted(rows, key=lambda s: (str(s.run_id), s.seq)):
        spec = tool_spec_of(session, step)
        if step.status == "running":
            events.record_step(
                session, step, "step.queued", model=step.model, reason="lease expired (worker lost)", tool=step.agent
            )
        step.status = "queued"
        step.lease_until = now + timedelta(seconds=queued_after_s)
        messages.append(ToolCallMessage(str(step.id), spec.timeout_s if spec else 10.0))
    session.flush()
    return messages
