"""Calls whose worker died before it could record them: Gemini may have billed them, their answers are lost.

A claim whose lease ran out while its steps were `running` had its call under way (a
worker killed mid-call, or between the answer and its commit). When the claim is taken
over (the sweeper re-offers the steps, or a new delivery of the batch claims them
again) that call is recorded in `llm_calls` with status `lost`: the input tokens the
quota gate reserved for it, output unknown (0), and their cost, so cost and quota use
count it. (A repair call in flight is counted in the same row; a worker that died
between its claim and its request makes the row one call too many.)

Its id follows from the claim (batch and claim time), so a claim is recorded lost once.
A holder that was alive after all and commits its answer later (its lease ran out while
PostgreSQL was unreachable) records the call itself and takes the estimate back.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from taskapp.domain.pricing import Usage, cost_usd
from taskapp.domain.prompts import prompt_tokens
from taskapp.settings import get_settings
from taskapp.store.models import LlmCall, Step
from taskapp.store.workflows import agent_of_step

log = logging.getLogger(__name__)

LOST = "lost"
_NAMESPACE = uuid.UUID("5b0c8f6e-2f1a-4c36-9d0e-6c1f3a7b9e42")


def lost_call_id(batch_id: uuid.UUID, claimed_at: datetime) -> uuid.UUID:
    """The id a claim's lost call is recorded under (one per claim, however often it is seen)."""
    return uuid.uuid5(_NAMESPACE, f"{batch_id}:{claimed_at.astimezone(UTC).isoformat()}")


def record_lost_calls(session: Session, taken_over: list[Step]) -> int:
    """Record the calls of claims being taken over: `running` steps as read before the takeover.

    Returns how many calls were recorded (a claim seen before is not recorded again).
    """
    claims: dict[tuple[uuid.UUID, datetime], list[Step]] = defaultdict(list)
    for step in taken_over:
        if step.status == "running" and step.batch_id is not None and step.started_at is not None:
            claims[(step.batch_id, step.started_at)].append(step)
    if not claims:
        return 0
    rows = []
    prices = get_settings().prices()  # the deployment's GEMINI_PRICES (no cached tokens: none are known)
    for (batch_id, claimed_at), steps in claims.items():
        agent, model = agent_of_step(session, steps[0]), steps[0].model
        tokens_in = prompt_tokens(agent, [(str(s.id), s.input) for s in steps])
        rows.append(
            {
                "id": lost_call_id(batch_id, claimed_at),
                "batch_id": batch_id,
                "agent": agent.name,
                "model": model,
                "step_count": len(steps),
                "status": LOST,
                "tokens_in": tokens_in,
                "tokens_out": 0,
                "latency_ms": 0,
                "cost_usd": cost_usd(model, Usage(tokens_in, 0), prices),
                "created_at": claimed_at,
                "error": "worker lost mid-call: Gemini may have billed the call; its answer never arrived "
                "(input tokens estimated, output unknown)",
            }
        )
    calls = cast(Table, LlmCall.__table__)  # a mapped class's table (SQLAlchemy types it as a FromClause)
    recorded = session.execute(
        insert(calls).values(rows).on_conflict_do_nothing(index_elements=["id"]).returning(calls.c.batch_id)
    ).all()
    for (batch_id,) in recorded:
        log.warning("a call in flight was lost with its worker; recorded as lost", extra={"batch_id": str(batch_id)})
    return len(recorded)


def take_back_lost_call(session: Session, batch_id: uuid.UUID, claimed: list[Step]) -> None:
    """The claim's holder got its answer after all (and records the call itself)."""
    ids = {lost_call_id(batch_id, s.started_at) for s in claimed if s.started_at is not None}
    if ids:
        session.execute(
            delete(LlmCall).where(LlmCall.id.in_(ids), LlmCall.status == LOST),
            execution_options={"synchronize_session": False},
        )
