"""Moving steps along: Postgres -> batch buffer -> a chord of calls -> the aggregator -> Postgres.

Every hand-over happens after the state it depends on is committed, so a crash
between two of them leaves work the sweeper can find (taskapp.pipeline.sweeper), never lost
work. The decisions live elsewhere (workflows, orchestrator, batching policy); this
module only carries them out against Redis, Postgres and the broker.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable

import redis
from celery import Celery, chord
from sqlalchemy.orm import Session, sessionmaker

from taskapp.domain.batching import chunks, company_can_come
from taskapp.hotstate.buffers import Batcher, Lane, Taken
from taskapp.hotstate.client import get_redis
from taskapp.keys import (
    EXECUTE_BATCH_TASK,
    FINISH_BATCHES_TASK,
    ORCHESTRATION_QUEUE,
    STARTED_PREFIX,
    llm_queue,
)
from taskapp.outages import dependency_of
from taskapp.per_process import per_process
from taskapp.pipeline import orchestrator
from taskapp.pipeline.tool_publish import publish_tool_calls
from taskapp.settings import Settings, get_settings
from taskapp.store import in_motion, run_starts
from taskapp.store.batches import close_batches, open_batch
from taskapp.store.db import session_factory

log = logging.getLogger(__name__)
# Runs decided in one transaction: a finished batch's runs at once, the sweeper's in slices
# (their row locks are held until the commit).
ADVANCE_CHUNK = 64
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}
# A run another run's start took along: its own start message finds this and stops before
# Postgres. Only ever set after the commit that started the run; without it (expired,
# Redis flushed or down) the message asks Postgres, which gives the same answer.
STARTED_TTL_S = 600
TOOL_KIND = orchestrator.TOOL_STEP


class Dispatcher:
    def __init__(self, settings: Settings, factory: sessionmaker[Session], batcher: Batcher, app: Celery) -> None:
        self.settings = settings
        self.factory = factory
        self.batcher = batcher
        self.app = app

    # -- runs -----------------------------------------------------------------------------

    def advance(self, run_ids: Iterable[uuid.UUID | str], origin: str | None = None, skip_locked: bool = False) -> None:
        """Take each run one decision further (a transaction per ADVANCE_CHUNK runs), then offer what it queued."""
        ids = sorted({uuid.UUID(str(r)) for r in run_ids})
        done = orchestrator.Advanced()
        for part in chunks(ids, ADVANCE_CHUNK):
            with self.factory.begin() as session:
                done.add(orchestrator.advance_runs(session, part, self.settings, origin, skip_locked))
        self._carry_out(done, origin)

    def start(self, run_id: uuid.UUID | str, origin: str | None = None) -> None:
        """A run's first move, made together with up to ADVANCE_CHUNK - 1 runs of its team
        still queued: a team's burst of submissions costs a transaction per ADVANCE_CHUNK
        runs, not one per run, and the others' own start messages find them started and stop
        (most of them on a Redis mark, without a transaction)."""
        if self._taken_along(run_id):
            return
        with self.factory.begin() as session:
            run = run_starts.lock_queued_run(session, uuid.UUID(str(run_id)))
            if run is None:  # started already, being started by another transaction, or gone
                return
            others = run_starts.queued_runs_to_start(session, run, ADVANCE_CHUNK - 1)
            done = orchestrator.advance_runs(session, [run.id, *others], self.settings, origin)
        self._mark_taken_along(others)
        self._carry_out(done, origin)

    def _mark_taken_along(self, run_ids: list[uuid.UUID]) -> None:
        if not run_ids:
            return
        try:
            pipe = self.batcher.client.pipeline(transaction=False)
            for rid in run_ids:
                pipe.set(f"{STARTED_PREFIX}:{rid}", 1, ex=STARTED_TTL_S)
            pipe.execute()
        except redis.RedisError:
            pass  # their messages ask Postgres instead

    def _taken_along(self, run_id: uuid.UUID | str) -> bool:
        """Consumes the mark: a redelivered message asks Postgres, as any other would."""
        try:
            return bool(self.batcher.client.delete(f"{STARTED_PREFIX}:{uuid.UUID(str(run_id))}"))
        except redis.RedisError:
            return False

    def _carry_out(self, done: orchestrator.Advanced, origin: str | None) -> None:
        """After the decisions' commit: offer the steps they queued, start what their ends let start."""
        self.offer(done.ready)
        if done.freed_teams:
            with self.factory() as session:
                waiting = run_starts.next_queued_runs(session, done.freed_teams)
            if waiting:
                self.advance(waiting, origin)

    # -- buffers --------------------------------------------------------------------------

    def lane_of(self, item: orchestrator.Ready) -> Lane:
        """A queued agent step's buffer, with the batch policy its agent and the settings give it."""
        policy = self.settings.batch_policy(item.agent, item.own_policy)
        return Lane(item.lane or item.agent, item.model, item.agent, policy, item.opens_runs)

    def offer(self, ready: list[orchestrator.Ready]) -> None:
        """Put queued steps in their buffers (a tool step goes to the tools queue); flush a buffer
        that is full, or at once for interactive runs."""
        tools = [i for i in ready if i.kind == TOOL_KIND]
        if tools:
            self.run_tools(tools)
        groups: dict[Lane, list[orchestrator.Ready]] = defaultdict(list)
        for item in ready:
            if item.kind != TOOL_KIND:
                groups[self.lane_of(item)].append(item)
        for lane, items in groups.items():
            try:
                waiting = self.batcher.offer(lane, [i.step_id for i in items])
            except redis.RedisError as exc:
                # The rows are committed as `queued`: the sweeper offers them again once Redis is back.
                log.warning(
                    "offer to the batch buffer failed: %s", exc, extra={"agent": lane.agent, "model": lane.model}
                )
                continue
            interactive = any(i.priority == "interactive" for i in items)
            if interactive or waiting >= lane.policy.max_size:
                self.flush(lane, force=interactive)

    def run_tools(self, items: list[orchestrator.Ready]) -> None:
        """Send each tool step to the tools queue (taskapp.pipeline.tool_runner runs it)."""
        publish_tool_calls(self.app, items)

    def flush(self, lane: Lane, *, force: bool = False, why: str = "interactive") -> list[uuid.UUID]:
        """Take what is due from a buffer (all of it when forced, saying `why`) and send it as
        one chord; returns the batch ids sent."""
        agent, model, policy = lane.agent, lane.model, lane.policy
        taken = self.batcher.take(lane, force=force)
        if not taken:
            return []
        batches: list[tuple[uuid.UUID, list[str], str]] = []
        try:
            # The chord is published inside the transaction that marks its steps: if this
            # process dies before the commit, the steps are still `queued` (and the sweeper
            # offers them again); a header task that starts early waits on the row locks.
            with self.factory.begin() as session:
                for part in chunks(taken, policy.max_size):
                    reason = why if force else ("full" if len(part) == policy.max_size else "window")
                    batch_id = uuid.uuid4()
                    joined = open_batch(
                        session, batch_id, agent, model, part, reason, self.settings.batch_stranded_s, lane=lane.lane
                    )
                    if joined:
                        batches.append((batch_id, joined, reason))
                if batches:
                    self._send_chord(lane, [(b, ids) for b, ids, _ in batches])
        except Exception as exc:
            self._put_back(lane, taken)
            if dependency_of(exc):  # an outage: the flusher backs off and says so once per retry
                raise
            log.exception("flush failed; putting %d step(s) back", len(taken), extra={"agent": agent, "model": model})
            return []
        for batch_id, ids, reason in batches:
            log.info(
                "flushed %d step(s) (%s)",
                len(ids),
                reason,
                extra={"agent": agent, "model": model, "batch_id": str(batch_id)},
            )
        return [b for b, _, _ in batches]

    def flush_idle(self, lanes: list[Lane]) -> list[uuid.UUID]:
        """Flush the waiting buffers that nothing on its way could still join (batching.company_can_come)."""
        candidates = [lane for lane in lanes if not lane.opens_runs]
        sizes = self.batcher.sizes([(lane.lane, lane.model) for lane in candidates])
        waiting = [lane for lane, size in zip(candidates, sizes, strict=True) if size]
        if not waiting:
            return []
        with self.factory() as session:
            seen = in_motion.read_outlook(session, self.batcher, self.settings.batch_stranded_s)
        if company_can_come(seen, first_step_agent=False):
            return []
        return [batch for lane in waiting for batch in self.flush(lane, force=True, why="idle")]

    def _put_back(self, lane: Lane, taken: list[Taken]) -> None:
        try:
            self.batcher.offer(lane, [t.step_id for t in taken])
        except redis.RedisError:
            pass  # still `queued` in Postgres: the sweeper finds them

    def _send_chord(self, lane: Lane, batches: list[tuple[uuid.UUID, list[str]]]) -> None:
        header = [
            self.app.signature(
                EXECUTE_BATCH_TASK,
                args=[str(batch_id), ids],
                kwargs={"agent": lane.agent, "model": lane.model, "lane": lane.lane},
                queue=llm_queue(lane.model),
            )
            for batch_id, ids in batches
        ]
        body = self.app.signature(
            FINISH_BATCHES_TASK, kwargs={"batch_ids": [str(b) for b, _ in batches]}, queue=ORCHESTRATION_QUEUE
        )
        chord(header, body).apply_async(retry=True, retry_policy=_PUBLISH_RETRY)

    # -- the aggregator -------------------------------------------------------------------

    def finish(self, batch_ids: list[uuid.UUID], origin: str | None = None) -> None:
        """Chord body: record the batches from Postgres (not from the header results), advance their runs."""
        with self.factory.begin() as session:  # a chord's runs are decided in the same transaction
            run_ids = close_batches(session, batch_ids)
            done = orchestrator.advance_runs(session, run_ids[:ADVANCE_CHUNK], self.settings, origin)
        self._carry_out(done, origin)
        if run_ids[ADVANCE_CHUNK:]:
            self.advance(run_ids[ADVANCE_CHUNK:], origin)


@per_process(key=lambda *_: ())
def get_dispatcher(app: Celery | None = None) -> Dispatcher:
    """This process's dispatcher (a forked child builds its own)."""
    if app is None:
        from taskapp.celery_app import app as celery_app

        app = celery_app
    settings = get_settings()
    return Dispatcher(settings, session_factory(settings), Batcher(get_redis(settings.require("redis_url"))), app)
