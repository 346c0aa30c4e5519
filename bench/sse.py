"""Issue 6's benchmark: one web process holding many live SSE streams.

    python -m bench.sse [--clients 1000]

Creates the runs while no worker runs, opens one stream per run (each first replays
its `run.queued`), measures the web process's memory with every stream open and idle,
then starts a worker: every further event is live, and its delay is measured from
the event's timestamp (taken in the committing transaction) to its arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.common import WEB_ENV, bench_stack, pct, table


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def web_worker_pid(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return int(children[0])


async def follow(
    client: httpx.AsyncClient,
    run_id: str,
    delays: list[float],
    done: list[int],
    opened: asyncio.Event,
    counter: list[int],
    total: int,
) -> None:
    async with client.stream("GET", f"/api/runs/{run_id}/events") as resp:
        buf = ""
        async for chunk in resp.aiter_text():
            buf += chunk
            while "\n\n" in buf:
                block, buf = buf.split("\n\n", 1)
                fields = dict(
                    line.split(":", 1) for line in block.splitlines() if ":" in line and not line.startswith(":")
                )
                if "data" not in fields:
                    continue
                data = json.loads(fields["data"])
                if fields.get("event") == "run.queued":
                    counter[0] += 1
                    if counter[0] == total:
                        opened.set()
                    continue
                sent = datetime.fromisoformat(data["ts"]).timestamp()
                delays.append((time.time() - sent) * 1000)
        done[0] += 1


async def run_clients(url: str, key: str, run_ids: list[str], on_open) -> tuple[list[float], int, float]:
    delays: list[float] = []
    done, counter = [0], [0]
    opened = asyncio.Event()
    limits = httpx.Limits(max_connections=len(run_ids) + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=httpx.Timeout(300, connect=60)
    ) as client:
        tasks = [asyncio.create_task(follow(client, r, delays, done, opened, counter, len(run_ids))) for r in run_ids]
        lags: list[float] = []

        async def ticker() -> None:  # how late this client's own loop runs (it measures the delays)
            loop = asyncio.get_running_loop()
            while True:
                t = loop.time()
                await asyncio.sleep(0.01)
                lags.append((loop.time() - t - 0.01) * 1000)

        tick = asyncio.create_task(ticker())
        await asyncio.wait_for(opened.wait(), 120)
        idle_rss = await asyncio.get_running_loop().run_in_executor(None, on_open)
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        tick.cancel()
        print(f"client loop lag p50 {pct(lags, 50):.1f} ms, p99 {pct(lags, 99):.1f} ms")
        return delays, done[0], idle_rss, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    args = parser.parse_args()
    with bench_stack() as stack:
        url, web = stack.start_web(workers=1, **WEB_ENV)
        from taskapp.store.db import session_factory
        from taskapp.store.teams import create_team

        with session_factory().begin() as s:
            key = create_team(s, "bench-sse")[1]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            run_ids = [
                c.post("/api/runs", json={"workflow": "summarize", "input": {"text": f"doc {i}"}}).json()["id"]
                for i in range(args.clients)
            ]
        pid = web_worker_pid(web.pid)
        base_rss = rss_mb(pid)
        peak = [base_rss]

        def streams_open() -> float:
            rss = rss_mb(pid)
            peak[0] = max(peak[0], rss)
            # now the runs move: every event from here is live
            stack.start_worker("sse", concurrency=int(os.environ.get("BENCH_WORKER_CONCURRENCY", "4")))
            return rss

        delays, finished, idle_rss, secs = asyncio.run(run_clients(url, key, run_ids, streams_open))
        peak[0] = max(peak[0], rss_mb(pid))
    print(f"\nOne gunicorn process (gevent), {args.clients} concurrent SSE clients, one live run each\n")
    print(
        table(
            ["measure", "value"],
            [
                ["streams that ended with their run's final event", f"{finished} / {args.clients}"],
                ["live events delivered", len(delays)],
                ["delay commit -> delivery p50 (ms)", pct(delays, 50)],
                ["delay commit -> delivery p99 (ms)", pct(delays, 99)],
                ["web process RSS before streams (MB)", base_rss],
                ["web process RSS, all streams open and idle (MB)", idle_rss],
                ["web process RSS peak (MB)", peak[0]],
                ["seconds until every run ended", secs],
            ],
        )
    )


if __name__ == "__main__":
    main()
