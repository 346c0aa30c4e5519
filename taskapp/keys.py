"""Every name taskapp shares across processes: Celery queues and task names, Redis keys.

One copy of each, so a worker, a web process and an operator's `redis-cli` agree on
what a key means. Names only: nothing here talks to Redis or a broker.
"""

from __future__ import annotations

import uuid

# --- Celery queues: orchestration apart from LLM calls, and one LLM queue per model, so
# operators scale call capacity per model (and see each model's backlog in Flower)
# without orchestration waiting behind slow calls.
ORCHESTRATION_QUEUE = "orchestration"


def llm_queue(model: str) -> str:
    return f"llm.{model}"


def all_queues() -> list[str]:
    from taskapp.domain.agents import models_in_use

    return [ORCHESTRATION_QUEUE] + [llm_queue(m) for m in models_in_use()]


# --- Celery task names (taskapp/tasks.py registers them; others send them by name).
START_RUN_TASK = "taskapp.start_run"
ADVANCE_RUN_TASK = "taskapp.advance_run"
EXECUTE_BATCH_TASK = "taskapp.execute_batch"
FINISH_BATCHES_TASK = "taskapp.finish_batches"

# --- Redis keys.
QUOTA_PREFIX = "taskapp:quota"  # the quota gate: taskapp:quota:<model>:<dimension>
BUFFER_PREFIX = "taskapp:batchbuf"  # a batch buffer: taskapp:batchbuf:<agent>:<model>
STARTED_PREFIX = "taskapp:started"  # a run's start already done by a starter that took it along
SWEEP_LOCK = "taskapp:sweeper:lease"  # the fleet's one sweeper at a time
RATE_LIMIT_PREFIX = "taskapp:ratelimit"  # the web's per-team request counters


def buffer_key(agent: str, model: str) -> str:
    return f"{BUFFER_PREFIX}:{agent}:{model}"


def run_channel(run_id: uuid.UUID | str) -> str:
    """The pub/sub channel a run's events are published on (streams subscribe to it)."""
    return f"taskapp:run:{run_id}"
