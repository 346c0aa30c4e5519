"""Which queued runs start now: a run locked for its first move, its team's others taken along,
the next one when a run of a team with a run limit ends, and that limit and the daily token
budget counted. Statements only; the orchestrator decides with them.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskapp.domain.quota import TeamShare, pacific_day_start
from taskapp.store.models import Run, Step, Team

log = logging.getLogger(__name__)


class TeamStarts:
    """Whether a team with a concurrent-run limit may start one more run now (`TeamShare`),
    counting the runs this transaction already started."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.started: Counter[uuid.UUID] = Counter()

    def may_start(self, run: Run, share: TeamShare) -> bool:
        if share.max_concurrent_runs is None:
            return True
        self.session.get(Team, run.team_id, with_for_update=True)  # two workers starting its runs: one at a time
        running = self.started[run.team_id] + (
            self.session.scalar(
                select(func.count()).select_from(Run).where(Run.team_id == run.team_id, Run.status == "running")
            )
            or 0
        )
        if not share.may_start_run(running):
            log.info("run waits for one of its team's %d running runs to end", running, extra={"run_id": str(run.id)})
            return False  # stays queued: a run of the team that ends starts it, or the sweeper does
        self.started[run.team_id] += 1
        return True


def lock_queued_run(session: Session, run_id: uuid.UUID) -> Run | None:
    """Lock a run; the run if it is still `queued` (not started yet by anyone).

    None too when another transaction holds it: a starter that took it along with its own
    (its start message then has nothing to do and must not wait, holding a worker, for
    that starter's commit), the sweeper starting it, or a cancel. If that holder rolls
    back, the sweeper starts the run after RUN_NUDGE_AFTER_S.
    """
    run = session.scalar(select(Run).where(Run.id == run_id).with_for_update(key_share=True, skip_locked=True))
    return run if run is not None and run.status == "queued" else None


def queued_runs_to_start(session: Session, run: Run, limit: int) -> list[uuid.UUID]:
    """Other runs of `run`'s team still waiting for their first move, oldest first, locked.

    None when the team has a concurrent-run limit (its queued runs wait for one of its
    runs to end, and are started then). `SKIP LOCKED`: a run another starter holds is its
    own, and waiting for it could deadlock two starters that each hold the other's run.
    """
    return list(
        session.scalars(
            select(Run.id)
            .join(Team, Team.id == Run.team_id)
            .where(
                Run.team_id == run.team_id, Run.status == "queued", Run.id != run.id, Team.max_concurrent_runs.is_(None)
            )
            .order_by(Run.created_at)
            .limit(limit)
            .with_for_update(of=Run, skip_locked=True, key_share=True)
        )
    )


def next_queued_runs(session: Session, team_ids: set[uuid.UUID]) -> list[uuid.UUID]:
    """Each team's oldest queued run: the one to start when one of its runs ended."""
    return [
        rid
        for rid in (
            session.scalar(
                select(Run.id).where(Run.team_id == t, Run.status == "queued").order_by(Run.created_at).limit(1)
            )
            for t in team_ids
        )
        if rid is not None
    ]


def team_tokens_today(session: Session, team_id: uuid.UUID, now: datetime) -> int:
    """The tokens a team's steps used since the quota day began (midnight Pacific)."""
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Step.tokens_in + Step.tokens_out), 0))
            .join(Run, Run.id == Step.run_id)
            .where(Run.team_id == team_id, Step.finished_at >= pacific_day_start(now))
        )
        or 0
    )
