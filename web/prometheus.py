"""`GET /metrics`: taskapp's numbers in Prometheus text format, for what Flower does not know.

Never open. `Authorization: Bearer $METRICS_TOKEN` (or an operator team's key) scrapes
the whole fleet, with queue depths; a team's key scrapes its own numbers only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from flask import Blueprint, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from taskapp.celery_app import queue_depths
from taskapp.store import metrics
from web.auth import metrics_scope
from web.context import db
from web.openapi import answers, documented

bp = Blueprint("prometheus", __name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TaskappCollector:
    """Built per scrape from Postgres and the broker (nothing cached in a web process)."""

    def __init__(self, scope: metrics.Scope) -> None:
        self.scope = scope

    def collect(self) -> Iterator[Metric]:
        session, scope = db(), self.scope
        labels = ["agent", "model"]
        steps = CounterMetricFamily("taskapp_steps", "Steps finished", labels=[*labels, "status"])
        batches = CounterMetricFamily(
            "taskapp_batches", "Batches flushed from the buffers, by why they were flushed", labels=[*labels, "reason"]
        )
        calls = CounterMetricFamily("taskapp_llm_calls", "Gemini requests", labels=labels)
        limited = CounterMetricFamily("taskapp_llm_rate_limited", "Gemini 429 answers", labels=labels)
        tokens = CounterMetricFamily("taskapp_tokens", "Tokens billed", labels=[*labels, "direction"])
        cached = CounterMetricFamily(
            "taskapp_tokens_cached",
            "Input tokens Gemini served from its prompt cache (part of taskapp_tokens direction=in)",
            labels=labels,
        )
        cost = CounterMetricFamily("taskapp_cost_usd", "Cost in USD (cached input at its price)", labels=labels)
        latency = GaugeMetricFamily("taskapp_llm_latency_ms", "Gemini call latency", labels=[*labels, "quantile"])
        batch_size = GaugeMetricFamily("taskapp_batch_size_mean", "Mean steps per batch", labels=labels)
        buffer_wait = GaugeMetricFamily(
            "taskapp_batch_wait_ms", "Time steps waited in a batch buffer", labels=[*labels, "quantile"]
        )
        for a in metrics.agent_stats(session, EPOCH, scope):
            key = [a.agent, a.model]
            steps.add_metric([*key, "succeeded"], a.steps - a.steps_failed)
            steps.add_metric([*key, "failed"], a.steps_failed)
            for reason, n in sorted(a.batches_by_reason.items()):
                batches.add_metric([*key, reason], n)
            calls.add_metric(key, a.llm_calls)
            limited.add_metric(key, a.rate_limited)
            tokens.add_metric([*key, "in"], a.tokens_in)
            tokens.add_metric([*key, "out"], a.tokens_out)
            cached.add_metric(key, a.tokens_cached)
            cost.add_metric(key, a.cost_usd)
            batch_size.add_metric(key, a.mean_batch_size)
            for q, v in (("0.5", a.latency_p50_ms), ("0.95", a.latency_p95_ms)):
                if v is not None:
                    latency.add_metric([*key, q], v)
            for q, v in (("0.5", a.buffer_wait_p50_ms), ("0.95", a.buffer_wait_p95_ms)):
                if v is not None:
                    buffer_wait.add_metric([*key, q], v)
        yield from (steps, batches, calls, limited, tokens, cached, cost, latency, batch_size, buffer_wait)
        quota = GaugeMetricFamily("taskapp_quota_used", "Quota used per model", labels=["model", "dimension"])
        for model, dims in metrics.quota_use(session, scope).items():
            for dim, value in dims.items():
                quota.add_metric([model, dim], value)
        yield quota
        runs = GaugeMetricFamily("taskapp_runs", "Runs by status", labels=["status"])
        for status, n in metrics.run_counts(session, scope).items():
            runs.add_metric([status], n)
        yield runs
        if not scope.fleet:
            return
        depth = GaugeMetricFamily("taskapp_queue_depth", "Messages waiting per Celery queue", labels=["queue"])
        for name, waiting in queue_depths().items():
            if waiting is not None:
                depth.add_metric([name], waiting)
        yield depth


@bp.get("/metrics")
@documented(tags=["metrics"], resp=answers(200, media_type="text/plain", errors=(401, 429)))
def prometheus_metrics():
    """Prometheus exposition of taskapp's metrics (credentials required)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskappCollector(metrics_scope()))
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
