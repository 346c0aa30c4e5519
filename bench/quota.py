"""Issue 3's benchmark: Celery's own `rate_limit` against taskapp's quota gate, 1/2/4 nodes.

    python -m bench.quota [--rpm 30] [--demand 1.5]

Same workload for both: `--demand` x RPM one-step requests submitted at once, against
a simulator that enforces `--rpm` on the model (Gemini's 429 bodies). (a) plain Celery
tasks with `rate_limit` set to the same RPM on every node; (b) taskapp runs (batch size
1, so one request per step) through the gate, configured with the same RPM. Read from
the simulator's own log: accepted requests in the busiest 60 s, % of the quota used,
429s answered; and the p95 time from submission to a finished step.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid

import httpx
import redis
from sqlalchemy import func, select

from bench.common import WEB_ENV, bench_stack, pct, table

MODEL = "gemini-2.5-flash-lite"


def busiest_minute(times: list[float]) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 60:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _sim_reset(stack, rpm: int) -> None:
    httpx.post(f"{stack.sim_url}/_sim/reset").raise_for_status()
    httpx.post(f"{stack.sim_url}/_sim/config", json={"quotas": {MODEL: {"rpm": rpm}}}).raise_for_status()


def _sim_log(stack) -> list[dict]:
    return [e for e in httpx.get(f"{stack.sim_url}/_sim/requests").json() if e["model"] == MODEL]


def celery_rate_limit(stack, nodes: int, rpm: int, requests: int, timeout_s: float) -> dict:
    from bench.ratelimit_app import QUEUE, TASK, app, call

    _sim_reset(stack, rpm)
    r = redis.Redis.from_url(stack.redis_url)
    r.delete("bench:rl:429", "bench:rl:latency")
    workers = [
        stack.start_worker(f"rl{nodes}n{i}", concurrency=2, app="bench.ratelimit_app", CELERY_TASK_EVENTS="false")
        for i in range(nodes)
    ]
    try:
        app.control.rate_limit(TASK, f"{rpm}/m", reply=True, timeout=5)
        for n in range(requests):
            call.apply_async(args=[n, time.time()], queue=QUEUE)
        deadline = time.monotonic() + timeout_s
        while r.llen("bench:rl:latency") < requests and time.monotonic() < deadline:
            time.sleep(0.5)
        latencies = [float(x) for x in r.lrange("bench:rl:latency", 0, -1)]
    finally:
        for w in workers:
            stack.stop(w)
    return _row("Celery rate_limit", nodes, rpm, _sim_log(stack), latencies, requests)


def taskapp_gate(stack, url: str, nodes: int, rpm: int, requests: int, timeout_s: float) -> dict:
    from taskapp.store.db import session_factory
    from taskapp.store.models import Run, Step
    from taskapp.store.teams import create_team

    _sim_reset(stack, rpm)
    env = {"GEMINI_QUOTAS": f'{{"{MODEL}": {{"rpm": {rpm}}}}}', "BATCH_MAX_SIZE": "1", "CELERY_TASK_EVENTS": "false"}
    workers = [stack.start_worker(f"gate{nodes}n{i}", concurrency=2, **env) for i in range(nodes)]
    factory = session_factory()
    with factory.begin() as s:
        team, key = create_team(s, f"bench-quota-{uuid.uuid4().hex[:8]}")
        team_id = team.id
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            for n in range(requests):
                c.post("/api/runs", json={"workflow": "summarize", "input": {"text": f"gate bench {n}"}})
        deadline = time.monotonic() + timeout_s
        with factory() as s:
            while (
                s.scalar(select(func.count()).select_from(Run).where(Run.team_id == team_id, Run.status == "succeeded"))
                < requests
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
                s.rollback()
            latencies = [
                (f - q).total_seconds()
                for q, f in s.execute(
                    select(Run.created_at, Step.finished_at)
                    .join(Step)
                    .where(Run.team_id == team_id, Step.finished_at.is_not(None))
                )
            ]
    finally:
        for w in workers:
            stack.stop(w)
    return _row("taskapp gate", nodes, rpm, _sim_log(stack), latencies, requests)


def _row(how: str, nodes: int, rpm: int, log: list[dict], latencies: list[float], requests: int) -> dict:
    accepted = [e["ts"] for e in log if e["status"] == 200]
    busiest = busiest_minute(accepted)
    return {
        "how": how,
        "nodes": nodes,
        "busiest": busiest,
        "used": 100 * busiest / rpm,
        "429": sum(1 for e in log if e["status"] == 429),
        "p95": pct(latencies, 95),
        "done": f"{len(latencies)}/{requests}",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rpm", type=int, default=30)
    parser.add_argument("--demand", type=float, default=1.5, help="requests submitted, as a multiple of RPM")
    parser.add_argument("--nodes", default="1,2,4")
    args = parser.parse_args()
    requests = int(args.rpm * args.demand)
    timeout_s = 60 * (args.demand + 1.5)
    rows = []
    with bench_stack() as stack:
        url, _ = stack.start_web(**WEB_ENV)
        for nodes in (int(n) for n in args.nodes.split(",")):
            for result in (
                celery_rate_limit(stack, nodes, args.rpm, requests, timeout_s),
                taskapp_gate(stack, url, nodes, args.rpm, requests, timeout_s),
            ):
                rows.append(
                    [
                        result["how"],
                        nodes,
                        result["busiest"],
                        f"{result['used']:.0f}%",
                        result["429"],
                        result["p95"],
                        result["done"],
                    ]
                )
                print(rows[-1], flush=True)
    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"simulator quota {args.rpm} RPM on {MODEL}; {requests} one-call requests submitted at once; "
        f"each node prefork x2\n"
    )
    print(
        table(
            [
                "limiter",
                "worker nodes",
                "accepted in busiest 60 s",
                "% of quota used",
                "429s answered",
                "p95 submit -> done (s)",
                "finished",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
