"""Celery configuration for taskapp workers and producers (values from taskapp settings).

Delivery is at-least-once: a task is acknowledged after it ran (acks_late), and put
back if its worker process dies (reject_on_worker_lost). Tasks are idempotent (see
taskapp.pipeline.executor), so a redelivery never bills a committed step twice.
"""

from kombu import Exchange, Queue

from taskapp.keys import ORCHESTRATION_QUEUE, RUN_TOOL_TASK, TOOLS_QUEUE, all_queues
from taskapp.settings import get_settings

_settings = get_settings()

# Hard limit on any one task; the broker's visibility timeout must exceed it, or the
# Redis transport redelivers a task that is still running.
TASK_HARD_TIME_LIMIT_S = 300
VISIBILITY_TIMEOUT_S = 3600

broker_url = _settings.effective_broker_url
result_backend = _settings.effective_result_backend
broker_connection_retry_on_startup = True
broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
if broker_url.startswith("redis://"):
    # One Redis client per channel instead of one per publish (see taskapp.broker_transport).
    broker_transport = "taskapp.broker_transport:Transport"
result_backend_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
# Batch results only feed their chord's aggregator (which reads Postgres anyway).
result_expires = 3600
# One result backend per process, not one per thread: under gevent each connection's
# greenlet would otherwise build its own (7-35 ms, an entry-point scan) on its first
# send. The Redis backend's client is a thread-safe connection pool.
result_backend_thread_safe = True

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

task_acks_late = True
task_reject_on_worker_lost = True
# When the broker connection drops, let running tasks finish rather than kill them: their
# Gemini answers are paid for and their commits go to PostgreSQL, not to the broker.
# (Their acks are lost with the connection; a redelivery finds the steps committed.)
worker_cancel_long_running_tasks_on_connection_loss = False
worker_prefetch_multiplier = 1
task_time_limit = TASK_HARD_TIME_LIMIT_S
task_soft_time_limit = TASK_HARD_TIME_LIMIT_S - 30
task_ignore_result = True

# Task events feed Flower's task view. They cost the worker's parent process about
# 40% of its CPU at full load (docs/benchmarks.md); CELERY_TASK_EVENTS=false turns them
# off, and Flower still turns them on at the workers while it watches (--enable_events).
worker_send_task_events = _settings.task_events
task_send_sent_event = _settings.task_events
worker_hijack_root_logger = False
worker_concurrency = _settings.worker_concurrency


def _queue(name: str) -> Queue:
    # Each queue its own exchange and key: a shared default binding would copy
    # every message into every queue.
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


task_default_queue = ORCHESTRATION_QUEUE
task_default_exchange = ORCHESTRATION_QUEUE
task_default_routing_key = ORCHESTRATION_QUEUE
task_queues = [_queue(name) for name in all_queues(_settings.gemini_models)]
task_routes = {
    "taskapp.start_run": {"queue": ORCHESTRATION_QUEUE},
    "taskapp.advance_run": {"queue": ORCHESTRATION_QUEUE},
    "taskapp.finish_batches": {"queue": ORCHESTRATION_QUEUE},
    RUN_TOOL_TASK: {"queue": TOOLS_QUEUE},
}
