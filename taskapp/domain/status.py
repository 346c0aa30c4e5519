"""The states a run and a step go through, and the events that record each change: the one copy.

A step is `queued` (stored and offered to its agent's buffer), `batched` (taken into a
batch whose message is on its way), `running` (claimed under a lease by the task making
the call), then final.
"""

from __future__ import annotations

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_RUN_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

STEP_STATUSES = ("queued", "batched", "running", "succeeded", "failed", "cancelled")
PENDING_STEP_STATUSES = frozenset({"queued", "batched", "running"})
FINAL_STEP_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

EVENT_TYPES = (
    "run.queued",
    "run.started",
    "step.queued",
    "step.batched",
    "step.started",
    "step.succeeded",
    "step.failed",
    "step.retrying",
    "quota.wait",
    "run.succeeded",
    "run.failed",
    "run.cancelled",
)
# The event that ends a run's stream: one per final status.
FINAL_EVENTS = frozenset(f"run.{status}" for status in FINAL_RUN_STATUSES)
