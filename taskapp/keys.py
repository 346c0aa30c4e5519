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
# Tool calls (taskapp.tools): deployer code, apart from orchestration and the model calls.
TOOLS_QUEUE = "tools"


def llm_queue(model: str) -> str:
    return f"llm.{model}"


def all_queues(models: list[str]) -> list[str]:
    """Every queue a worker node consumes by default: orchestration, tools, one per served model."""
    return [ORCHESTRATION_QUEUE, TOOLS_QUEUE] + [llm_queue(m) for m in models]


# --- Celery task names (taskapp/tasks.py registers them; others send them by name).
START_RUN_TASK = "taskapp.start_run"
ADVANCE_RUN_TASK = "taskapp.advance_run"
EXECUTE_BATCH_TASK = "taskapp.execute_batch"
FINISH_BATCHES_TASK = "taskapp.finish_batches"
RUN_TOOL_TASK = "taskapp.run_tool"

# --- Redis keys.
QUOTA_PREFIX = "taskapp:quota"  # the quota gate: taskapp:quota:<model>:<dimension>
BUFFER_PREFIX = "taskapp:batchbuf"  # a batch buffer: taskapp:batchbuf:<lane>:<model>
LANES_KEY = "taskapp:lanes"  # hash: "<lane>|<model>" -> the lane's batch policy, for the flushers
STARTED_PREFIX = "taskapp:started"  # a run's start already done by a starter that took it along
SWEEP_LOCK = "taskapp:sweeper:lease"  # the fleet's one sweeper at a time
RATE_LIMIT_PREFIX = "taskapp:ratelimit"  # the web's per-team request counters


def buffer_key(lane: str, model: str) -> str:
    return f"{BUFFER_PREFIX}:{lane}:{model}"


def run_channel(run_id: uuid.UUID | str) -> str:
    """The pub/sub channel a run's events are published on (streams subscribe to it)."""
    return f"taskapp:run:{run_id}"
