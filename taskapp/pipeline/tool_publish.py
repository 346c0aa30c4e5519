"""Sending tool steps to the tools queue: one `taskapp.run_tool` message per step, after the
commit that queued it (the dispatcher's offer, the sweeper's take-back).

Each message carries its tool's time limits. The tool call itself is bounded in the worker by
its timeout (taskapp.pipeline.time_limits); these per-message Celery limits are the backstop
around the whole task (claim, call, commit, advance), generous enough never to fire first:
the hard one kills a pool process whose tool is stuck where no signal reaches it, and the
step is taken over once its lease runs out. They also lift the deployment's default task
limits (celeryconfig: 270 s soft, 300 s hard) for a tool allowed to run longer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from celery import Celery

from taskapp.keys import RUN_TOOL_TASK, TOOLS_QUEUE

# Beyond the tool's timeout, for the task's own work around the call (its commit may wait out
# a PostgreSQL restart: taskapp.pipeline.tool_runner.COMMIT_RETRY_S).
SOFT_LIMIT_EXTRA_S = 25.0
HARD_LIMIT_EXTRA_S = 30.0
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}


class ToolCallItem(Protocol):
    """A queued tool step: orchestrator.Ready and store.tool_steps.ToolCallMessage both are."""

    @property
    def step_id(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...


def time_limits(timeout_s: float) -> tuple[float, float]:
    """(soft, hard) Celery time limits for a tool call of `timeout_s`."""
    return timeout_s + SOFT_LIMIT_EXTRA_S, timeout_s + HARD_LIMIT_EXTRA_S


def publish_tool_calls(app: Celery, items: Iterable[ToolCallItem]) -> int:
    """One `run_tool` message per step on the tools queue; returns how many were sent."""
    sent = 0
    for item in items:
        soft, hard = time_limits(item.timeout_s)
        app.send_task(
            RUN_TOOL_TASK,
            args=[item.step_id],
            queue=TOOLS_QUEUE,
            soft_time_limit=soft,
            time_limit=hard,
            retry=True,
            retry_policy=_PUBLISH_RETRY,
        )
        sent += 1
    return sent
