"""Issue 2's benchmark: API enqueue latency, end-to-end steps/s, raw Celery no-op rate, one run.

    python -m bench.foundation [--runs 300] [--noop 3000]

Everything on one 2-core machine: the load generator, gunicorn (gevent), the
workers, PostgreSQL, Redis and the zero-latency Gemini simulator.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from sqlalchemy import func, select

from bench import cpu, loadgen
from bench.common import WEB_ENV, bench_stack, pct, table

WORKER_CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "4"))


SUMMARY = {"workflow": "summarize", "input": {"text": "benchmark text " * 10}}
RESEARCH = {"workflow": "research", "input": {"question": "how do batching and quotas interact?", "max_revisions": 1}}


def _request(url: str, key: str, path: str, body: dict) -> bytes:
    if path == "/api/runs":
        return loadgen.build_request(url, "POST", path, {"Authorization": f"Bearer {key}"}, body)
    return loadgen.build_request(url, "GET", path, {})


def enqueue_latency(
    url: str, key: str, clients: int, requests: int, path: str = "/api/runs", body: dict = SUMMARY
) -> dict[str, float]:
    """Closed loop: each client sends its next POST as soon as the last one answered.

    With `path="/healthz"` it GETs that instead: the floor any request has on this
    machine with this load generator and web server, whatever it does.
    """
    latencies, elapsed = loadgen.closed_loop(url, _request(url, key, path, body), clients, requests)
    return {"p50": pct(latencies, 50), "p99": pct(latencies, 99), "rps": len(latencies) / elapsed, "n": len(latencies)}


def enqueue_open_loop(
    url: str, key: str, clients: int, rate_per_client: float, seconds: float, path: str = "/api/runs"
) -> dict[str, float]:
    """Open loop: each client submits on its own schedule (users, not a hammer), whatever the answers."""
    latencies = loadgen.open_loop(url, _request(url, key, path, SUMMARY), clients, rate_per_client, seconds)
    return {"p50": pct(latencies, 50), "p99": pct(latencies, 99), "rps": clients * rate_per_client, "n": len(latencies)}


# Steady state: the work done between the moments 10 % and 90 % of it was done, over
# that time. It leaves out the ramp-up and the drain, where the last partial batch of
# runs' first steps waits out its window (BATCH_MAX_WAIT_MS; later steps flush idle).
STEADY_FROM, STEADY_TO = 0.1, 0.9


@dataclass(frozen=True)
class Throughput:
    whole: float  # per second, from the first submission until everything ended
    steady: float  # per second, between STEADY_FROM and STEADY_TO of the work done
    cpu_ms: dict[str, float]  # the machine's CPU per unit of work, by part


class _Progress(threading.Thread):
    """When shares of the work were done, polled from a counter *while* the work is sent.

    (The first passes polled only once every task was published: by then far more than
    STEADY_FROM of them had run, and the steady no-op rate came out up to 2.5x too high.)
    """

    def __init__(self, count: Callable[[], int], total: int) -> None:
        super().__init__(daemon=True)
        self.count, self.total, self.marks = count, total, {}
        self.start()

    def run(self) -> None:
        while True:
            done, now = self.count(), time.perf_counter()
            for share in (STEADY_FROM, STEADY_TO, 1.0):
                if done >= share * self.total:
                    self.marks.setdefault(share, now)
            if done >= self.total:
                return
            time.sleep(0.005)

    def steady(self) -> float:
        self.join()
        return (STEADY_TO - STEADY_FROM) * self.total / (self.marks[STEADY_TO] - self.marks[STEADY_FROM])


def noop_rate(stack, tasks: int, *, queued_first: bool = False) -> Throughput:
    """No-op tasks per second, and the machine's CPU ms per task by part.

    Published while the worker runs (as the API submits runs while workers run them), or,
    with `queued_first`, all queued before the worker starts: the worker's rate alone,
    nothing else on the machine (its whole-job rate and CPU then hold the worker's boot
    and mean nothing; they come out as NaN).
    """
    from bench.noop_app import app, noop

    r = redis.Redis.from_url(stack.redis_url)
    r.delete("bench:noop:done")

    def publish() -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(tasks):
                noop.apply_async(producer=producer)

    if queued_first:
        publish()
    progress = _Progress(lambda: int(r.get("bench:noop:done") or 0), tasks)
    worker = stack.start_worker("noop", concurrency=WORKER_CONCURRENCY, app="bench.noop_app")
    try:
        if queued_first:
            return Throughput(float("nan"), progress.steady(), {})
        before = cpu.snapshot()
        t0 = time.perf_counter()
        publish()
        steady = progress.steady()
        return Throughput(
            tasks / (progress.marks[1.0] - t0),
            steady,
            {part: 1000 * s / tasks for part, s in cpu.spent_since(before).items()},
        )
    finally:
        stack.stop(worker)


def steps_per_second(stack, url: str, key: str, runs: int, body: dict = SUMMARY) -> Throughput:
    """Submit `runs` runs through the API (one-step `summarize` runs unless told); steps per
    second until every run has ended, and the machine's CPU ms per step by part."""
    from taskapp.store.db import session_factory
    from taskapp.store.models import Run, Step

    worker = stack.start_worker("e2e", concurrency=WORKER_CONCURRENCY)
    factory = session_factory()
    with factory() as s:
        team_id = _team_id(s, key)
    mine = Run.team_id == team_id
    try:
        before = cpu.snapshot()
        t0 = time.perf_counter()
        submitted = enqueue_latency(url, key, clients=10, requests=runs, body=body)["n"]
        with factory() as s:
            while (
                s.scalar(select(func.count()).select_from(Run).where(Run.status.in_(("succeeded", "failed")), mine))
                < submitted
            ):
                time.sleep(0.05)
                s.rollback()
            elapsed = time.perf_counter() - t0
            steps = s.scalar(select(func.count()).select_from(Step).join(Run).where(mine))
            failed = s.scalar(select(func.count()).select_from(Run).where(Run.status == "failed", mine))
            shares = (func.percentile_disc(share).within_group(Step.finished_at) for share in (STEADY_FROM, STEADY_TO))
            first, last = s.execute(select(*shares).select_from(Step).join(Run).where(mine)).one()
        assert failed == 0, f"{failed} runs failed"
        steady = (STEADY_TO - STEADY_FROM) * steps / (last - first).total_seconds()
        return Throughput(
            steps / elapsed, steady, {part: 1000 * s / steps for part, s in cpu.spent_since(before).items()}
        )
    finally:
        stack.stop(worker)


def _cancel_waiting_runs() -> None:
    """The enqueue phases' runs never start: cancel them, so no later phase works on them."""
    from datetime import UTC, datetime

    from sqlalchemy import update

    from taskapp.store.db import session_factory
    from taskapp.store.models import Run

    with session_factory().begin() as s:
        s.execute(update(Run).where(Run.status == "queued").values(status="cancelled", finished_at=datetime.now(UTC)))


def _team_id(session, key):
    from taskapp.store.teams import team_for_key

    return team_for_key(session, key).id


def _new_team(name: str) -> str:
    from taskapp.store.db import session_factory
    from taskapp.store.teams import create_team

    with session_factory().begin() as s:
        return create_team(s, name)[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--noop", type=int, default=3000)
    parser.add_argument("--research-runs", type=int, default=600)
    parser.add_argument("--web-workers", type=int, default=2)
    args = parser.parse_args()
    with bench_stack() as stack:
        url, _ = stack.start_web(workers=args.web_workers, **WEB_ENV)
        key = _new_team("bench-enqueue")
        enqueue_latency(url, key, 10, 200)  # warm-up: connections, imports, caches
        one = enqueue_latency(url, key, 1, 300)
        fifty = enqueue_latency(url, key, 50, 2000)
        floor = enqueue_latency(url, key, 50, 2000, path="/healthz")
        steady = enqueue_open_loop(url, key, clients=50, rate_per_client=2, seconds=10)
        steady_floor = enqueue_open_loop(url, key, clients=50, rate_per_client=2, seconds=10, path="/healthz")
        redis.Redis.from_url(stack.redis_url).flushdb()  # drop the queued starts: API-only measurement
        _cancel_waiting_runs()  # or the sweeper starts them (after RUN_NUDGE_AFTER_S) during the e2e phase
        raw = noop_rate(stack, args.noop)
        alone = noop_rate(stack, args.noop, queued_first=True)
        single = steps_per_second(stack, url, _new_team("bench-e2e"), args.runs)
        research = steps_per_second(stack, url, _new_team("bench-research"), args.research_runs, RESEARCH)
    from taskapp.settings import get_settings

    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"web: gunicorn gevent x{args.web_workers}, worker: 1 node prefork x{WORKER_CONCURRENCY}, "
        f"task events {'on' if get_settings().task_events else 'off'}\n"
    )
    print(
        table(
            ["API enqueue (POST /api/runs)", "requests", "p50 ms", "p99 ms", "req/s"],
            [
                ["1 client", one["n"], one["p50"], one["p99"], one["rps"]],
                [
                    "50 concurrent clients, closed loop (saturation)",
                    fifty["n"],
                    fifty["p50"],
                    fifty["p99"],
                    fifty["rps"],
                ],
                [
                    "50 concurrent clients, open loop (2 req/s each)",
                    steady["n"],
                    steady["p50"],
                    steady["p99"],
                    steady["rps"],
                ],
                [
                    "floor: GET /healthz (no work at all), 50 concurrent clients, closed loop",
                    floor["n"],
                    floor["p50"],
                    floor["p99"],
                    floor["rps"],
                ],
                [
                    "floor: GET /healthz, 50 concurrent clients, open loop (2 req/s each)",
                    steady_floor["n"],
                    steady_floor["p50"],
                    steady_floor["p99"],
                    steady_floor["rps"],
                ],
            ],
        )
    )
    print()
    # The ratios are taken against the higher of the two no-op rates: the stricter bar.
    noop_steady = max(raw.steady, alone.steady)
    print(
        table(
            ["throughput (same broker, same worker concurrency)", "whole job, per s", "steady state, per s"],
            [
                ["raw Celery no-op tasks, published while the worker runs", raw.whole, raw.steady],
                ["raw Celery no-op tasks, all queued before the worker starts (the worker alone)", "-", alone.steady],
                [
                    (
                        f"end-to-end steps ({args.research_runs} runs of the built-in research workflow, "
                        "~6 steps each: planner, researchers, writer, reviewer; zero-latency simulator)"
                    ),
                    research.whole,
                    research.steady,
                ],
                [
                    "end-to-end steps / no-op tasks",
                    f"{research.whole / raw.whole:.3f}",
                    f"{research.steady / noop_steady:.3f}",
                ],
                [
                    (
                        f"one-step runs ({args.runs} `summarize` runs: every step is a whole run, "
                        "with its own API request and start message)"
                    ),
                    single.whole,
                    single.steady,
                ],
                [
                    "one-step run steps / no-op tasks",
                    f"{single.whole / raw.whole:.3f}",
                    f"{single.steady / noop_steady:.3f}",
                ],
            ],
        )
    )
    print(
        f"(steady state: between {STEADY_FROM:.0%} and {STEADY_TO:.0%} of the tasks or steps done; the whole job "
        "also holds the ramp-up and the drain, where the last partial batch of runs' first steps waits out "
        "BATCH_MAX_WAIT_MS; "
        "ratios against the higher no-op rate)"
    )
    print()
    parts = sorted(set(raw.cpu_ms) | set(research.cpu_ms), key=lambda p: -single.cpu_ms.get(p, 0))
    print(
        table(
            ["CPU ms on this machine, by part", "per no-op task", "per research step", "per one-step-run step"],
            [
                [p, raw.cpu_ms.get(p, 0.0), research.cpu_ms.get(p, 0.0), single.cpu_ms.get(p, 0.0)]
                for p in parts
                if p != "other"
            ]
            + [
                [
                    "total (all processes)",
                    sum(raw.cpu_ms.values()),
                    sum(research.cpu_ms.values()),
                    sum(single.cpu_ms.values()),
                ]
            ],
        )
    )
    print(
        "(a one-step run's step carries its run's whole cost: its API request alone (the web's CPU) and its "
        "start message (at least a no-op task) already come near three no-op tasks' CPU)"
    )


if __name__ == "__main__":
    main()
