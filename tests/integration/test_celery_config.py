"""Celery as the workers run it: the delivery guarantees the executor rests on."""

from __future__ import annotations


def test_celery_config_keeps_at_least_once_delivery(settings):
    """The invariants the executor's idempotency rests on: acknowledged after the task ran, put
    back if its process dies, one message at a time, JSON only, and no task (nor any retry's
    countdown) outlives the Redis visibility timeout, or the broker would deliver it twice."""
    from taskapp.celery_app import app
    from taskapp.domain.retry import BACKOFF_CAP_S, JITTER_SPREAD
    from taskapp.keys import ORCHESTRATION_QUEUE, TOOLS_QUEUE, llm_queue
    from taskapp.tasks import MAX_QUOTA_WAIT_S

    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == conf.result_serializer == "json"
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility > conf.task_time_limit > conf.task_soft_time_limit
    assert visibility > MAX_QUOTA_WAIT_S and visibility > BACKOFF_CAP_S * (1 + JITTER_SPREAD)
    queues = {q.name for q in conf.task_queues}
    assert queues == {ORCHESTRATION_QUEUE, TOOLS_QUEUE} | {llm_queue(m) for m in settings.gemini_models}
    assert len(queues) > 3  # orchestration, tools, and one queue per served model
