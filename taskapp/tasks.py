"""Celery tasks: thin wrappers that pass ids to the dispatcher and the executor.

Task names and arguments carry the run, batch and step ids, so Flower tells an
operator which runs a task serves.
"""

from __future__ import annotations

import logging
import random
import uuid

from taskapp.celery_app import app
from taskapp.domain.retry import backoff_s, jittered
from taskapp.hotstate.quota_gate import QuotaGate, gate_for
from taskapp.keys import ADVANCE_RUN_TASK, EXECUTE_BATCH_TASK, FINISH_BATCHES_TASK, RUN_TOOL_TASK, START_RUN_TASK
from taskapp.llm.gemini import get_client
from taskapp.outages import TRANSIENT_ERRORS
from taskapp.per_process import per_process
from taskapp.pipeline import executor, tool_runner
from taskapp.pipeline.dispatcher import get_dispatcher
from taskapp.settings import get_settings
from taskapp.store.db import session_factory

log = logging.getLogger(__name__)

# PostgreSQL or Redis restarting: retry with backoff (1, 2, 4 ... 30 s) instead of failing.
# The sweeper is the backstop for a message lost with a Redis that lost its data.
OUTAGE_RETRY = {"autoretry_for": TRANSIENT_ERRORS, "retry_backoff": 1, "retry_backoff_max": 30, "retry_jitter": True}


@app.task(bind=True, name=START_RUN_TASK, max_retries=12, **OUTAGE_RETRY)
def start_run(self, run_id: str) -> None:
    """First move of a run (published by the API), and of other runs still queued with it."""
    get_dispatcher(app).start(run_id, origin=self.request.hostname)


@app.task(bind=True, name=ADVANCE_RUN_TASK, max_retries=12, **OUTAGE_RETRY)
def advance_run(self, run_id: str) -> None:
    """Decide and queue a run's next steps, or finish it.

    The aggregator advances the runs of its batches; this task is the nudge for
    everything else (an operator's `celery call taskapp.advance_run`). Idempotent.
    """
    get_dispatcher(app).advance([run_id], origin=self.request.hostname)


# A waiting task re-checks the gate at least this often: a Redis broker redelivers ETA
# tasks held longer than its visibility timeout, so a day-long park is many short waits.
MAX_QUOTA_WAIT_S = 300


@per_process
def _gate() -> QuotaGate:
    return gate_for(get_settings(), lease_ms=(app.conf.task_time_limit + 30) * 1000)


@app.task(bind=True, name=EXECUTE_BATCH_TASK, max_retries=None, ignore_result=False, **OUTAGE_RETRY)
def execute_batch(
    self, batch_id: str, step_ids: list[str], agent: str, model: str, failures: int = 0, lane: str | None = None
) -> dict:
    """Chord header: one Gemini call for a batch, through the quota gate.

    Returns per-step outcomes; a bad answer never raises. Waiting for quota is a retry
    with the gate's delay (no worker slot sleeps); only failed calls count as failures.
    """
    settings = get_settings()
    context = {"agent": agent, "model": model, "batch_id": batch_id}
    try:
        outcome = executor.execute_batch(
            session_factory(),
            get_client(settings),
            uuid.UUID(batch_id),
            step_ids,
            lease_s=settings.step_lease_s,
            stranded_s=settings.batch_stranded_s,
            retry_delay_s=backoff_s(failures),
            give_up=failures >= settings.llm_max_retries,
            gate=_gate(),
            max_attempts=settings.step_max_attempts,
            prices=settings.prices(),
        )
    except executor.QuotaWait as exc:
        log.info("waiting for quota: %s", exc, extra=context)
        # exc= puts "quota: wait 12.0s (rpm)" on the retry, which Flower shows for the task.
        raise self.retry(
            countdown=min(MAX_QUOTA_WAIT_S, exc.delay_s + random.uniform(0, 0.05)),
            exc=exc,
            kwargs={"agent": agent, "model": model, "failures": failures, "lane": lane},
        ) from None
    except executor.RetryLater as exc:
        log.warning("retrying batch: %s", exc, extra=context)
        raise self.retry(
            countdown=jittered(exc.delay_s),
            exc=exc,
            kwargs={"agent": agent, "model": model, "failures": failures + 1, "lane": lane},
        ) from None
    return outcome.as_result()


@app.task(bind=True, name=FINISH_BATCHES_TASK, max_retries=12, **OUTAGE_RETRY)
def finish_batches(self, results: list[dict] | None = None, batch_ids: list[str] | None = None) -> None:
    """Chord body (the aggregator): records the batches and advances every run in them."""
    get_dispatcher(app).finish([uuid.UUID(b) for b in batch_ids or []], origin=self.request.hostname)


@app.task(bind=True, name=RUN_TOOL_TASK, max_retries=None, **OUTAGE_RETRY)
def run_tool(self, step_id: str) -> None:
    """One tool call (a tool step), then its run's next decision.

    Idempotent per step: a delivery that finds the step finished, or running under a live
    lease, does nothing. A failed call the tool's `retries` allow again is this task again
    (`self.retry`, with the message's time limits); the attempts are counted on the step.
    """
    settings = get_settings()
    done = tool_runner.run_tool_step(
        session_factory(), step_id, lease_s=settings.step_lease_s, stranded_s=settings.batch_stranded_s
    )
    if done.status == "retry":
        raise self.retry(countdown=done.retry_in_s, exc=tool_runner.ToolRetry(done.error or "tool call failed"))
    if done.run_id is not None:
        get_dispatcher(app).advance([done.run_id], origin=self.request.hostname)
