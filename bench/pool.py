"""Issue 22's benchmark: Gemini calls in flight per worker process, prefork against waiting pools.

    python -m bench.pool [--latencies 1000,5000] [--pools prefork,threads,gevent] [--seconds 20]

For each call latency (the simulator's, in its own process) and each pool, one `llm` node
(`taskapp worker llm`: prefork at WORKER_CONCURRENCY 4, threads or gevent at
LLM_WORKER_CONCURRENCY 200) drains a backlog of queued one-step batches (`summarize`,
batch size 1: a call per step) that the orchestration node (prefork 2, shared by every
row) queued before the node started. A backlog, not a closed loop of runs: on this
2-core machine the orchestration side caps a closed loop near 28 steps/s whatever the
pool (measured), which would hide what one `llm` process can hold. Over the steady part
(after a warm-up) it samples, every 250 ms, the calls the simulator is answering (calls
in flight, counted where they arrive) and the node's memory (PSS of its processes, so a
prefork node's shared pages count once, the embedded flusher not counted; and the
largest process's RSS), and reads from PostgreSQL the steps committed. Little's law
checks the numbers against each other: calls in flight = steps/s x latency. The quota
gate is configured wide open (it is not what is measured).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid
from datetime import UTC, datetime

import httpx
import psutil
from sqlalchemy import func, select

from bench.common import bench_stack, mean, table

FINAL = ("succeeded", "failed", "cancelled")
PREFORK_CONCURRENCY = 4  # WORKER_CONCURRENCY's default: today's worker node
WAITING_CONCURRENCY = 200  # LLM_WORKER_CONCURRENCY's default
MODEL = "gemini-2.5-flash-lite"  # the summarizer's
CPU_CALLS_S = 45  # about what one process's core makes of calls per second (CPU ms / call below)
WIDE_OPEN = '{"*": {"rpm": 1000000, "tpm": 1000000000, "rpd": null, "concurrency": 10000}}'
# Batch size 1: a call per step. Queued batches wait for their node far longer than usual:
# neither stranded (re-offered) nor their runs nudged while they wait.
ENV = {
    "BATCH_MAX_SIZE": "1",
    "BATCH_MAX_WAIT_MS": "0",
    "CELERY_TASK_EVENTS": "false",
    "GEMINI_QUOTAS": WIDE_OPEN,
    "BATCH_STRANDED_S": "3600",
    "RUN_NUDGE_AFTER_S": "3600",
}


def node_processes(pid: int) -> list[psutil.Process]:
    """The node's main process and its pool processes (not the flusher it runs beside it)."""
    main = psutil.Process(pid)
    children = [c for c in main.children(recursive=True) if "taskapp.pipeline.flusher" not in " ".join(c.cmdline())]
    return [main, *children]


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def memory_mb(procs: list[psutil.Process]) -> tuple[float, float]:
    """(the node's PSS, the largest RSS of one of its processes), in MB. PSS shares each page
    among the processes that map it, so a prefork node's copy-on-write pages count once."""
    pss, rss = 0, 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        pss += info.pss
        rss = max(rss, info.rss)
    return pss / 2**20, rss / 2**20


def backlog(pool: str, latency_ms: int, span_s: float, waiting_concurrency: int) -> int:
    """Batches to queue before the node starts: more than it can take in the window, so it
    never runs dry (a waiting pool is CPU-bound near CPU_CALLS_S calls/s, see the docs)."""
    slots = PREFORK_CONCURRENCY if pool == "prefork" else waiting_concurrency
    rate = min(slots / (latency_ms / 1000), CPU_CALLS_S)
    return int(rate * span_s * 1.3) + 20


def fill_backlog(stack, team_id: uuid.UUID, n: int, timeout_s: float = 300) -> None:
    """Submit `n` one-step runs and wait until the orchestration node queued all their batches."""
    from taskapp.celery_app import queue_depths
    from taskapp.keys import llm_queue
    from taskapp.pipeline import intake
    from taskapp.store.db import session_factory

    queue = llm_queue(MODEL)
    with session_factory()() as s:
        for _ in range(n):
            intake.submit_run(
                s, team_id=team_id, workflow="summarize", input={"text": f"doc {uuid.uuid4().hex} " * 4}, options={}
            )
    deadline = time.monotonic() + timeout_s
    while (queue_depths([queue])[queue] or 0) < n:
        assert time.monotonic() < deadline, f"only {queue_depths([queue])} of {n} batches queued"
        time.sleep(0.5)


def clear_backlog(team_id: uuid.UUID) -> None:
    """Purge what the node left in its queue and cancel those runs: the next row starts quiet."""
    from taskapp.celery_app import app
    from taskapp.keys import llm_queue
    from taskapp.pipeline import orchestrator
    from taskapp.store.db import session_factory
    from taskapp.store.models import Run

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(llm_queue(MODEL))
    with session_factory().begin() as s:
        for run_id in s.scalars(select(Run.id).where(Run.team_id == team_id, Run.status.not_in(FINAL))).all():
            orchestrator.cancel_run(s, run_id)


def measure(
    stack, team_id: uuid.UUID, pool: str, latency_ms: int, seconds: float, warmup_s: float, waiting_concurrency: int
) -> dict:
    from taskapp.store.db import session_factory
    from taskapp.store.models import Run, Step

    concurrency = PREFORK_CONCURRENCY if pool == "prefork" else waiting_concurrency
    httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": latency_ms}).raise_for_status()
    queued = backlog(pool, latency_ms, warmup_s + seconds, waiting_concurrency)
    fill_backlog(stack, team_id, queued)
    node = stack.start_worker(
        f"llm-{pool}-{latency_ms}",
        concurrency=None,
        role="llm",
        LLM_WORKER_POOL=pool,
        LLM_WORKER_CONCURRENCY=str(concurrency),
        **ENV,
    )
    inflight: list[int] = []
    pss: list[float] = []
    rss: list[float] = []
    try:
        procs = node_processes(node.pid)
        callers = procs[1:] if pool == "prefork" else procs  # a prefork node's main process makes no call
        steady_at = time.monotonic() + warmup_s
        time.sleep(max(0.0, steady_at - time.monotonic()))
        started, cpu0, lo = time.monotonic(), cpu_s(procs), datetime.now(UTC)
        psutil.cpu_percent()  # the machine's, from now on
        while time.monotonic() < started + seconds:
            time.sleep(0.25)
            inflight.append(httpx.get(f"{stack.sim_url}/_sim/inflight").json()["in_flight"])
            if len(inflight) % 4 == 1:  # reading smaps costs the node a little: once a second
                node_pss, largest_rss = memory_mb(procs)
                pss.append(node_pss)
                rss.append(largest_rss)
        span = time.monotonic() - started
        cpu = cpu_s(procs) - cpu0
        machine = psutil.cpu_percent()
        hi = datetime.now(UTC)
    finally:
        stack.stop(node)
        clear_backlog(team_id)
    with session_factory()() as s:
        mine = select(Run.id).where(Run.team_id == team_id)
        steps = s.scalar(
            select(func.count())
            .select_from(Step)
            .where(Step.run_id.in_(mine), Step.finished_at >= lo, Step.finished_at < hi, Step.status == "succeeded")
        )
    steps_s = steps / (hi - lo).total_seconds()
    return {
        "pool": pool,
        "latency_s": latency_ms / 1000,
        "callers": len(callers),
        "concurrency": concurrency,
        "backlog": queued,
        "inflight": mean(inflight),
        "peak": max(inflight),
        "steps_s": steps_s,
        "little": steps_s * latency_ms / 1000,
        "pss_first": pss[0],
        "pss_max": max(pss),
        "rss_max": max(rss),
        "cpu_pct": 100 * cpu / span,
        "cpu_ms_call": 1000 * cpu / max(1, steps_s * span),
        "machine_pct": machine,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latencies", default="1000,5000")
    parser.add_argument("--pools", default="prefork,threads,gevent")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=6)
    parser.add_argument("--concurrency", type=int, default=WAITING_CONCURRENCY, help="of the threads and gevent nodes")
    args = parser.parse_args()
    rows = []
    with bench_stack() as stack:
        from taskapp.store.db import session_factory
        from taskapp.store.teams import create_team

        with session_factory().begin() as s:
            team_id = create_team(s, f"bench-pool-{uuid.uuid4().hex[:8]}")[0].id
        orchestration = stack.start_worker("orchestration", concurrency=2, role="orchestration", **ENV)
        try:
            for latency in (int(v) for v in args.latencies.split(",")):
                for pool in args.pools.split(","):
                    r = measure(stack, team_id, pool, latency, args.seconds, args.warmup, args.concurrency)
                    print(r, flush=True)
                    rows.append(
                        [
                            r["pool"],
                            f"{r['latency_s']:g}",
                            r["callers"],
                            r["concurrency"],
                            r["backlog"],
                            r["inflight"],
                            r["peak"],
                            r["inflight"] / r["callers"],
                            r["steps_s"],
                            r["little"],
                            f"{r['pss_first']:.0f} → {r['pss_max']:.0f}",
                            r["rss_max"],
                            r["pss_max"] / r["inflight"] if r["inflight"] else float("nan"),
                            r["cpu_pct"],
                            r["cpu_ms_call"],
                            r["machine_pct"],
                        ]
                    )
        finally:
            stack.stop(orchestration)
    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d}; one `llm` node per row beside one orchestration node (prefork 2); "
        f"the node drains a backlog of queued one-step batches (batch size 1: a call per step); steady "
        f"{args.seconds:g} s after {args.warmup:g} s warm-up; task events off\n"
    )
    print(
        table(
            [
                "pool",
                "latency s",
                "calling processes",
                "concurrency",
                "backlog",
                "calls in flight",
                "peak",
                "in flight / process",
                "steps/s",
                "steps/s x latency",
                "node PSS MB (first → max)",
                "RSS MB, largest process",
                "PSS MB / call in flight",
                "node CPU %",
                "CPU ms / call",
                "machine CPU %",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
