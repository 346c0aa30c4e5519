"""Shared helpers for the benchmarks: the stack, percentiles, tables."""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from taskapp.dev.localstack import LocalStack

ROOT = Path(__file__).resolve().parent.parent


# One team drives each benchmark far past a team's default API_RATE_LIMIT; the limit's own
# Redis round trip stays on the path, measured like any other cost of a request.
WEB_ENV = {"API_RATE_LIMIT": "100000/second"}


@contextmanager
def bench_stack(sim_latency_ms: int = 0) -> Iterator[LocalStack]:
    """Services from TASKAPP_TEST_DATABASE_URL / TASKAPP_TEST_REDIS_URL when set, else embedded."""
    # A SIGTERM (a timeout, Ctrl-C from a supervisor) still runs the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with (
        tempfile.TemporaryDirectory(prefix="taskapp-bench-") as tmp,
        LocalStack(
            Path(tmp),
            admin_database_url=os.environ.get("TASKAPP_TEST_DATABASE_URL"),
            redis_url=os.environ.get("TASKAPP_TEST_REDIS_URL"),
            sim_latency_ms=sim_latency_ms,
            sim_in_process=False,
            log_dir=ROOT / "bench-logs",
        ) as stack,
    ):
        env = stack.env()
        for key in ("DATABASE_URL", "REDIS_URL", "GEMINI_BASE_URL", "NO_PROXY", "WORKFLOWS_PATH"):
            os.environ[key] = env[key]
        from taskapp.catalog.shared import release
        from taskapp.settings import get_settings

        get_settings.cache_clear()
        release(get_settings())  # the schema, and the shipped workflows the benchmarks run
        yield stack


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:,.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
