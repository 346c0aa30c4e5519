"""Queue names: orchestration apart from LLM calls, and one LLM queue per model.

Separate queues let operators scale call capacity per model (and see each model's
backlog in Flower) without orchestration waiting behind slow calls.
"""

from __future__ import annotations

from typing import Any

ORCHESTRATION_QUEUE = "orchestration"


def llm_queue(model: str) -> str:
    return f"llm.{model}"


def all_queues() -> list[str]:
    from taskapp.domain.agents import models_in_use

    return [ORCHESTRATION_QUEUE] + [llm_queue(m) for m in models_in_use()]


def depths(celery_app: Any, queues: list[str] | None = None) -> dict[str, int | None]:
    """Messages waiting per queue, for Redis and AMQP brokers alike (None: broker down)."""
    from amqp.exceptions import ChannelError

    names = queues or all_queues()
    out: dict[str, int | None] = {}
    try:
        with celery_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            for name in names:
                channel = conn.channel()  # AMQP closes a channel on a 404: one each
                try:
                    out[name] = channel.queue_declare(queue=name, passive=True).message_count
                except ChannelError:
                    out[name] = 0  # not declared by any consumer yet: nothing waits in it
                finally:
                    channel.close()
    except Exception:  # noqa: BLE001 (kombu/amqp raise many kinds; all mean "unknown now")
        return {q: None for q in names}
    return out
