"""Running one tool step: claim it, call the tool within its timeout, commit what came of it.

Three short transactions and no transaction during the call: the claim (taskapp.store.tool_steps;
a delivery that finds the step finished, or running under a live lease, does nothing), the
call (arguments checked against the tool's schema first, its lease renewed meanwhile), and
the commit, conditional on the claim. What a failure leads to (a retry, an error fed back to
the agent, a failed step) is taskapp.domain.tool_calls' decision; the retry itself is the
Celery task's (`self.retry`), so this module never loops.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.orm import Session, sessionmaker

from taskapp import tools as registry
from taskapp.domain import tool_calls
from taskapp.domain.agents import ToolSpec
from taskapp.domain.tool_calls import Failure, Verdict
from taskapp.outages import retry_database
from taskapp.pipeline.leases import LeaseKeeper
from taskapp.pipeline.time_limits import TimedOut, call_within
from taskapp.store import tool_steps
from taskapp.store.models import Step

log = logging.getLogger(__name__)
# How long a tool's result waits for PostgreSQL to come back before it is given up (inside
# the task's hard time limit: taskapp.pipeline.tool_publish.HARD_LIMIT_EXTRA_S).
COMMIT_RETRY_S = 20


class ToolRetry(Exception):
    """A failed tool call that runs again (the reason Flower shows on the retried task)."""


@dataclass(frozen=True)
class ToolRun:
    """What one delivery did: `run_id` is set when it committed the step (advance that run)."""

    status: Literal["skipped", "succeeded", "failed", "retry"]
    run_id: str | None = None
    retry_in_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class _Claimed:
    step: Step
    spec: ToolSpec


def run_tool_step(factory: sessionmaker[Session], step_id: str, *, lease_s: float, stranded_s: float) -> ToolRun:
    claimed = _claim(factory, uuid.UUID(step_id), lease_s)  # an outage here: the task's outage retry
    if not isinstance(claimed, _Claimed):
        return claimed
    step, spec = claimed.step, claimed.spec
    context = {"run_id": str(step.run_id), "step_id": str(step.id), "agent": spec.name}
    with LeaseKeeper(factory, [step], lease_s):
        verdict = _call(spec, step)
    if verdict.action == "retry":
        log.warning("tool call failed, retrying in %.1fs: %s", verdict.retry_in_s, verdict.error, extra=context)
    elif verdict.error or (verdict.output or {}).get("error"):
        log.warning("tool call failed: %s", verdict.error or (verdict.output or {}).get("error"), extra=context)
    else:
        log.info("tool call succeeded (attempt %d)", step.attempts, extra=context)
    return retry_database(
        lambda: _commit(factory, step, verdict, stranded_s), budget_s=COMMIT_RETRY_S, what=f"committing {step.id}"
    )


def _claim(factory: sessionmaker[Session], step_id: uuid.UUID, lease_s: float) -> _Claimed | ToolRun:
    with factory.begin() as session:
        step = tool_steps.lock_claimable(session, step_id)
        if step is None:
            return ToolRun("skipped")
        spec = tool_steps.tool_spec_of(session, step)
        if spec is None:  # a stored definition always snapshots its tools; an old or edited row may not
            missing = Failure(tool_calls.UNAVAILABLE, f"the run's definition has no tool {step.agent!r}")
            verdict = Verdict("fail", error=str(missing))
        elif step.attempts >= tool_calls.attempts_allowed(spec):
            # Every allowed attempt started and none finished: the last one's worker died.
            verdict = tool_calls.final(spec, tool_calls.worker_lost(spec, step.attempts))
        else:
            return _Claimed(tool_steps.claim(session, step, lease_s), spec)
        tool_steps.finish_unclaimed(session, step, verdict)
        log.error(
            "tool step ended without a call: %s",
            verdict.error or (verdict.output or {}).get("error"),
            extra={"run_id": str(step.run_id), "step_id": str(step.id), "agent": step.agent},
        )
        return ToolRun(_status(verdict), run_id=str(step.run_id), error=verdict.error)


def _call(spec: ToolSpec, step: Step) -> Verdict:
    """What came of this attempt: the tool's faults (bad arguments, a raise, a timeout) are verdicts, never raised."""
    result, failure = _result(spec, (step.input or {}).get("arguments"))
    if failure is None:
        return tool_calls.succeeded(result)
    return tool_calls.after_failure(spec, step.attempts, failure)


def _result(spec: ToolSpec, arguments: Any) -> tuple[Any, Failure | None]:
    failure = tool_calls.argument_failure(spec, arguments)
    if failure is not None:
        return None, failure
    found = registry.get_tool(spec.name)
    if found is None:
        return None, Failure(tool_calls.UNAVAILABLE, f"no tool {spec.name!r} is registered on this worker")
    try:
        value = call_within(found.function, arguments, spec.timeout_s)
    except (TimedOut, SoftTimeLimitExceeded):
        return None, tool_calls.timed_out(spec)
    except Exception as exc:  # noqa: BLE001 (the tool's fault, recorded for the agent, never the worker's)
        return None, tool_calls.raised(exc)
    return tool_calls.as_result(value)


def _commit(factory: sessionmaker[Session], step: Step, verdict: Verdict, stranded_s: float) -> ToolRun:
    with factory.begin() as session:
        if verdict.action == "retry":
            if tool_steps.release_for_retry(session, step, verdict, stranded_s):
                return ToolRun("retry", retry_in_s=verdict.retry_in_s, error=verdict.error)
            return ToolRun("skipped")
        if not tool_steps.finish(session, step, verdict):
            return ToolRun("skipped")  # the claim moved on (the sweeper took the step back, the run ended)
    return ToolRun(_status(verdict), run_id=str(step.run_id), error=verdict.error)


def _status(verdict: Verdict) -> Literal["succeeded", "failed"]:
    return "failed" if verdict.action == "fail" else "succeeded"
