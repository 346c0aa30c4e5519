"""Issue 4's benchmark: what batching buys at saturation, per batch size and window.

    python -m bench.batching [--inflight 200] [--seconds 20] [--latency-ms 1000] [--teams 1,4,16]

A closed loop keeps `--inflight` one-step runs (workflow `summarize`) in flight: each
run that ends is replaced at once. Two worker nodes, the simulator answering every
call after `--latency-ms`. Measured over the steady part (after a warm-up, before
the drain), from Postgres (batches, steps) and from the simulator's own request log:
Gemini calls per step, steps per second, and the wait each step spent in its buffer.
Runs are submitted in-process through `taskapp.pipeline.intake` (the API's own code path
minus HTTP), so the web server's CPU does not compete with the workers'.

`--teams` adds the cost of keeping teams apart: the same load spread over that many teams,
with the shipped `summarize` (one prompt never carries two teams' steps, the default) and
with `summarize_shared` (the same agent, shared across teams by the deployer).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select

from bench.common import bench_stack, pct, table

WORKER_CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "8"))
FINAL = ("succeeded", "failed", "cancelled")


def run_config(
    stack,
    size: int,
    window_ms: int,
    inflight: int,
    seconds: float,
    warmup_s: float,
    teams: int = 1,
    workflow: str = "summarize",
) -> dict:
    from taskapp.pipeline import intake
    from taskapp.store.db import session_factory
    from taskapp.store.models import Batch, Run, Step
    from taskapp.store.teams import create_team

    env = {"BATCH_MAX_SIZE": str(size), "BATCH_MAX_WAIT_MS": str(window_ms), "CELERY_TASK_EVENTS": "false"}
    workers = [
        stack.start_worker(f"batch{size}w{window_ms}n{i}", concurrency=WORKER_CONCURRENCY, **env) for i in range(2)
    ]
    factory = session_factory()
    with factory.begin() as s:
        team_ids = [create_team(s, f"bench-batching-{uuid.uuid4().hex[:8]}")[0].id for _ in range(teams)]
    turn = iter(range(10**9))

    def submit(n: int) -> list[uuid.UUID]:
        ids = []
        with factory() as s:
            for _ in range(n):
                run, _ = intake.submit_run(
                    s,
                    team_id=team_ids[next(turn) % teams],
                    workflow=workflow,
                    input={"text": f"bench document {uuid.uuid4().hex} " * 4},
                    options={},
                )
                ids.append(run.id)
        return ids

    try:
        pending = set(submit(inflight))
        start = datetime.now(UTC)
        t_end = time.monotonic() + warmup_s + seconds
        while time.monotonic() < t_end:
            time.sleep(0.05)
            with factory() as s:
                done = set(s.scalars(select(Run.id).where(Run.id.in_(pending), Run.status.in_(FINAL))))
            pending -= done
            pending |= set(submit(len(done)))
        end = datetime.now(UTC)
        drain_deadline = time.monotonic() + 120
        while pending and time.monotonic() < drain_deadline:
            time.sleep(0.2)
            with factory() as s:
                pending -= set(s.scalars(select(Run.id).where(Run.id.in_(pending), Run.status.in_(FINAL))))
    finally:
        for w in workers:
            stack.stop(w)

    lo, hi = start + timedelta(seconds=warmup_s), end
    mine = select(Run.id).where(Run.team_id.in_(team_ids))
    with factory() as s:
        failed = s.scalar(
            select(func.count()).select_from(Run).where(Run.team_id.in_(team_ids), Run.status != "succeeded")
        )
        steps_done = s.scalar(
            select(func.count())
            .select_from(Step)
            .where(Step.run_id.in_(mine), Step.finished_at >= lo, Step.finished_at < hi)
        )
        waits = list(
            s.scalars(
                select(Step.buffer_wait_ms).where(Step.run_id.in_(mine), Step.batched_at >= lo, Step.batched_at < hi)
            )
        )
        batched, calls, batches = s.execute(
            select(func.coalesce(func.sum(Batch.size), 0), func.coalesce(func.sum(Batch.calls), 0), func.count()).where(
                Batch.flushed_at >= lo,
                Batch.flushed_at < hi,
                Batch.id.in_(select(Step.batch_id).where(Step.run_id.in_(mine))),
            )
        ).one()
    sim_calls = sum(
        1 for e in httpx.get(f"{stack.sim_url}/_sim/requests").json() if lo.timestamp() <= e["ts"] < hi.timestamp()
    )
    span = (hi - lo).total_seconds()
    return {
        "size": size,
        "window": window_ms,
        "failed": failed,
        "calls_per_step": calls / batched if batched else float("nan"),
        "sim_calls_per_step": sim_calls / batched if batched else float("nan"),
        "mean_batch": batched / batches if batches else float("nan"),
        "steps_s": steps_done / span,
        "p50": pct(waits, 50),
        "p95": pct(waits, 95),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inflight", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--latency-ms", type=int, default=1000)
    parser.add_argument("--sizes", default="1,4,8,16")
    parser.add_argument("--windows", default="250,1000")
    parser.add_argument("--teams", default="", help="e.g. 1,4,16: the isolation table (batch size 8, window 250)")
    args = parser.parse_args()
    rows = []
    with bench_stack(sim_latency_ms=args.latency_ms) as stack:
        if args.teams:
            print(isolation_table(stack, [int(t) for t in args.teams.split(",")], args), flush=True)
            if not args.sizes:
                return
        for window in (int(w) for w in args.windows.split(",")):
            for size in (int(n) for n in args.sizes.split(",")):
                r = run_config(stack, size, window, args.inflight, args.seconds, args.warmup)
                goal_calls = 1.2 / size
                rows.append(
                    [
                        size,
                        window,
                        f"{r['calls_per_step']:.3f}",
                        f"{r['sim_calls_per_step']:.3f}",
                        f"{goal_calls:.3f}",
                        f"{r['mean_batch']:.1f}",
                        r["steps_s"],
                        r["p50"],
                        r["p95"],
                        window + 100,
                        r["failed"],
                    ]
                )
                print(rows[-1], flush=True)
    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.inflight} one-step runs in flight (closed loop), simulator latency {args.latency_ms} ms, "
        f"2 worker nodes x prefork {WORKER_CONCURRENCY}, task events off; steady {args.seconds:g} s after "
        f"{args.warmup:g} s warm-up\n"
    )
    print(
        table(
            [
                "batch size",
                "window ms",
                "calls/step",
                "calls/step (simulator log)",
                "goal <=",
                "mean batch",
                "steps/s",
                "added wait p50 ms",
                "added wait p95 ms",
                "goal p95 <=",
                "runs not ok",
            ],
            rows,
        )
    )


def isolation_table(stack, team_counts: list[int], args: argparse.Namespace) -> str:
    """Calls per step and added wait with teams kept apart (the default) and with a shared agent."""
    rows = []
    for teams in team_counts:
        for workflow, how in (("summarize", "kept apart"), ("summarize_shared", "shared agent")):
            r = run_config(stack, 8, 250, args.inflight, args.seconds, args.warmup, teams=teams, workflow=workflow)
            rows.append(
                [teams, how, f"{r['calls_per_step']:.3f}", f"{r['mean_batch']:.1f}", r["steps_s"], r["p50"], r["p95"]]
            )
            print(rows[-1], flush=True)
    head = (
        f"\nTeams kept apart or sharing calls: {args.inflight} one-step runs in flight spread evenly over the "
        f"teams, batch size 8, window 250 ms, simulator latency {args.latency_ms} ms\n\n"
    )
    return head + table(
        ["teams", "batching", "calls/step", "mean batch", "steps/s", "added wait p50 ms", "added wait p95 ms"], rows
    )


if __name__ == "__main__":
    main()
