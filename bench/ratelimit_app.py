"""The baseline for issue 3's benchmark: Celery's own `rate_limit` in front of the same SDK call.

The limit is set with `app.control.rate_limit(...)` once the workers run; each worker
node keeps its own token bucket, so N nodes let N times the limit through. A 429 is
retried after Gemini's retryDelay, as a careful user of plain Celery would.
"""

from __future__ import annotations

import time

import redis
from celery import Celery

from taskapp.catalog.files import load_path
from taskapp.dev.localstack import EXAMPLES
from taskapp.domain.prompts import batch_schema, build_prompt, system_instruction
from taskapp.llm.gemini import LlmError, get_client
from taskapp.settings import get_settings

app = Celery("bench_ratelimit")
app.config_from_object("celeryconfig")
QUEUE = "orchestration"  # a queue every worker of this config consumes
TASK = "bench.ratelimited_call"
_redis: redis.Redis | None = None


def _r() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(app.conf.broker_url)
    return _redis


@app.task(bind=True, name=TASK, max_retries=None, acks_late=True)
def call(self, n: int, submitted: float) -> None:
    (summarize,) = [d for d in load_path(str(EXAMPLES), models=get_settings().gemini_models) if d.name == "summarize"]
    agent = summarize.agents["summarizer"]
    try:
        get_client(get_settings()).generate(
            model=agent.model,
            system_instruction=system_instruction(agent),
            prompt=build_prompt([(f"step-{n}", {"text": f"rate limit bench {n}"})]),
            response_schema=batch_schema(agent),
            temperature=0.2,
            max_output_tokens=256,
        )
    except LlmError as exc:
        if exc.kind in ("rate_limited", "daily_quota"):
            _r().incr("bench:rl:429")
            raise self.retry(countdown=exc.retry_after_s or 1) from None
        raise
    _r().rpush("bench:rl:latency", time.time() - submitted)
