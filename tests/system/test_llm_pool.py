"""The `llm` node on the threads pool: many Gemini calls in flight in one process, the gate still exact.

A stack of its own (database, Redis db, simulator), laid out as the Procfile lays it out:
an orchestration node (prefork) and one `llm` node (threads), each started the way
`taskapp worker <role>` starts it. The simulator answers every call after LATENCY_MS and
counts the calls it is answering at once: that count is the judge, read where the calls
arrive. Counts and invariants only, no timing.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import httpx
import psutil
import pytest

from taskapp.dev.localstack import LocalStack
from tests.helpers import ARTIFACTS, next_db

MODEL = "gemini-2.5-flash-lite"  # the summarizer's model
GATE_CONCURRENCY = 60  # the quota gate's concurrency limit for MODEL: fewer than the node's threads
THREADS = 100  # LLM_WORKER_CONCURRENCY of the one llm node
RUNS = 150  # one step each, batch size 1: one call per run
LATENCY_MS = 2500
# Leases shorter than a call: only the LeaseKeeper's renewals (threads of a pool thread) keep
# the sweeper from offering a step again mid-call, which would show as a second call.
NODE_ENV = {
    "GEMINI_QUOTAS": f'{{"{MODEL}": {{"concurrency": {GATE_CONCURRENCY}}}}}',
    "BATCH_MAX_SIZE": "1",
    "STEP_LEASE_S": "2",
    "SWEEP_INTERVAL_S": "1",
    "CELERY_TASK_EVENTS": "false",
}


@pytest.fixture(scope="module")
def pool_stack(tmp_path_factory):
    with LocalStack(
        tmp_path_factory.mktemp("pool"),
        admin_database_url=os.environ.get("TASKAPP_TEST_DATABASE_URL"),
        redis_url=next_db(os.environ.get("TASKAPP_TEST_REDIS_URL")),
        sim_latency_ms=LATENCY_MS,
        log_dir=ARTIFACTS,
    ) as s:
        from taskapp.settings import load_settings
        from taskapp.store import migrate

        migrate.upgrade(load_settings(s.env()))
        url, _ = s.start_web(API_RATE_LIMIT="100000/minute", **NODE_ENV)  # it polls 150 runs a second
        s.start_worker("pool-orch", concurrency=2, role="orchestration", **NODE_ENV)
        llm = s.start_worker(
            "pool-llm",
            concurrency=None,
            role="llm",
            LLM_WORKER_POOL="threads",
            LLM_WORKER_CONCURRENCY=str(THREADS),
            **NODE_ENV,
        )
        yield s, url, llm
        # (LocalStack stops every process it started, the replacement node of the test below too.)


def _db_connections(pid: int, database_url: str) -> int:
    """TCP connections the llm node's process holds to PostgreSQL right now."""
    from sqlalchemy.engine import make_url

    port = make_url(database_url).port or 5432
    return sum(1 for c in psutil.Process(pid).net_connections("tcp") if c.raddr and c.raddr.port == port)


def test_one_threads_process_keeps_many_calls_in_flight_and_the_gate_holds(pool_stack):
    stack, url, llm = pool_stack
    from taskapp.settings import load_settings

    node = load_settings(stack.env(**NODE_ENV))
    sim = stack.sim
    assert sim is not None
    sim.state.reset()
    from taskapp.store.db import session_factory
    from taskapp.store.teams import create_team

    with session_factory(node).begin() as session:
        key = create_team(session, f"pool-{uuid.uuid4().hex[:8]}")[1]

    # While calls are in flight: how many, and how many database connections the node holds then.
    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            samples.append((sim.state.inflight()["in_flight"], _db_connections(llm.pid, str(node.database_url))))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        ids = [
            c.post(
                "/api/runs",
                json={"workflow": "summarize", "input": {"text": f"pool {i}"}, "options": {"priority": "interactive"}},
            ).json()["id"]
            for i in range(RUNS)
        ]
        deadline = time.monotonic() + 300
        while True:
            runs = [c.get(f"/api/runs/{i}").json() for i in ids]
            if all(r["status"] in ("succeeded", "failed", "cancelled") for r in runs):
                break
            assert time.monotonic() < deadline, sorted(r["status"] for r in runs)
            time.sleep(1)
    stop.set()
    watcher.join()

    assert [r["status"] for r in runs] == ["succeeded"] * RUNS
    peak = sim.state.inflight()["peak"]
    # Many calls at once from one process (prefork would hold WORKER_CONCURRENCY), and never
    # more than the gate allows, although the node has more threads than that.
    assert 50 <= peak <= GATE_CONCURRENCY, peak
    # Every run's step called once: no lease ran out mid-call, no delivery called twice.
    answered = [e for e in sim.state.requests() if e["model"] == MODEL and e["status"] == 200]
    assert len(answered) == RUNS
    _assert_one_claim_and_one_bill_per_step(node, ids)
    # A call waiting on Gemini holds no database connection: with 50+ calls in flight the node
    # held no more than its pool allows (DB_POOL_SIZE + overflow).
    busy = [conns for flying, conns in samples if flying >= 50]
    assert busy, "no sample caught 50 calls in flight"
    assert max(busy) <= node.db_pool_size + node.db_pool_size // 2, busy


def _assert_one_claim_and_one_bill_per_step(settings, run_ids: list[str]) -> None:
    from sqlalchemy import func, select

    from taskapp.store.db import session_factory
    from taskapp.store.models import LlmCall, Step

    ids = [uuid.UUID(r) for r in run_ids]
    with session_factory(settings)() as session:
        steps = session.scalars(select(Step).where(Step.run_id.in_(ids))).all()
        assert len(steps) == RUNS
        assert {s.attempts for s in steps} == {1}, sorted({s.attempts for s in steps})
        batches = {s.batch_id for s in steps}
        billed = session.scalar(
            select(func.count()).select_from(LlmCall).where(LlmCall.batch_id.in_(batches), LlmCall.status == "ok")
        )
        assert billed == RUNS


def test_a_sigterm_to_the_threads_node_lets_every_call_in_flight_finish(pool_stack):
    """Heroku's stop (SIGTERM to the whole group) mid-calls: a warm shutdown, each call
    finishes and commits, none is cut and made again by the node that replaces it."""
    stack, url, llm = pool_stack
    from taskapp.settings import load_settings
    from taskapp.store.db import session_factory
    from taskapp.store.teams import create_team

    node = load_settings(stack.env(**NODE_ENV))
    sim = stack.sim
    assert sim is not None
    sim.state.reset()
    with session_factory(node).begin() as session:
        key = create_team(session, f"pool-stop-{uuid.uuid4().hex[:8]}")[1]
    runs = 40
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        ids = [
            c.post(
                "/api/runs",
                json={"workflow": "summarize", "input": {"text": f"stop {i}"}, "options": {"priority": "interactive"}},
            ).json()["id"]
            for i in range(runs)
        ]
        deadline = time.monotonic() + 60
        while sim.state.inflight()["in_flight"] < 30:
            assert time.monotonic() < deadline, sim.state.inflight()
            time.sleep(0.05)
        stack.stop(llm)  # SIGTERM to the process group, then waits (SIGKILL only after 30 s)
        assert llm.returncode == 0, llm.returncode
        cut_short = sim.state.inflight()["in_flight"]
        stack.start_worker(
            "pool-llm-2",
            concurrency=None,
            role="llm",
            LLM_WORKER_POOL="threads",
            LLM_WORKER_CONCURRENCY=str(THREADS),
            **NODE_ENV,
        )
        deadline = time.monotonic() + 120
        while True:
            done = [c.get(f"/api/runs/{i}").json()["status"] for i in ids]
            if all(s in ("succeeded", "failed", "cancelled") for s in done):
                break
            assert time.monotonic() < deadline, sorted(done)
            time.sleep(0.5)
    assert cut_short == 0
    assert done == ["succeeded"] * runs
    answered = [e for e in sim.state.requests() if e["model"] == MODEL and e["status"] == 200]
    assert len(answered) == runs  # none called twice
    with session_factory(node)() as session:
        from sqlalchemy import select

        from taskapp.store.models import Step

        attempts = session.scalars(select(Step.attempts).where(Step.run_id.in_([uuid.UUID(i) for i in ids]))).all()
    assert sorted(set(attempts)) == [1]
