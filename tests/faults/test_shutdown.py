"""Stopping a worker node the way Heroku does: SIGTERM to every process of it at once.

A stack of its own (a private Redis server, a database of its own, the simulator in
this process, a gunicorn web process), so no other test's workers take its batches and
the simulator's request log counts only its calls. Each node is its own process group,
as a dyno is (taskapp.dev.localstack), and is signalled as a group. A summary of the
restarts under load goes to test-artifacts/sigterm.json for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from taskapp.dev.localstack import LocalStack
from tests.helpers import ARTIFACTS

ENV = {
    "STEP_LEASE_S": "3",
    "BATCH_STRANDED_S": "60",
    "SWEEP_INTERVAL_S": "1",
    "RUN_NUDGE_AFTER_S": "3",
    "BATCH_MAX_WAIT_MS": "200",
    "CELERY_TASK_EVENTS": "false",
}
LOGS = ARTIFACTS / "shutdown"


class Stack:
    def __init__(self, stack: LocalStack) -> None:
        from taskapp.settings import load_settings
        from taskapp.store.db import session_factory
        from taskapp.store.teams import create_team

        self.stack = stack
        self.factory = session_factory(load_settings(stack.env()))
        url, self.web = stack.start_web()
        with self.factory.begin() as session:
            _, key = create_team(session, "shutdown")
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def latency(self, ms: int) -> None:
        httpx.post(f"{self.stack.sim_url}/_sim/config", json={"latency_ms": ms}).raise_for_status()

    def sim_requests(self, since: float) -> int:
        """Requests the simulator received since `since` (time.time()): what Gemini would bill."""
        return sum(1 for r in httpx.get(f"{self.stack.sim_url}/_sim/requests").json() if r["ts"] >= since)

    def submit(self, body: dict) -> uuid.UUID:
        resp = self.http.post("/api/runs", json=body)
        assert resp.status_code == 202, resp.text
        return uuid.UUID(resp.json()["id"])

    def summary(self, text: str) -> uuid.UUID:
        """A one-step run whose batch is flushed at once (interactive)."""
        return self.submit({"workflow": "summarize", "input": {"text": text}, "options": {"priority": "interactive"}})

    def steps(self, run_ids: list[uuid.UUID]):
        from taskapp.store.models import Step

        with self.factory() as session:
            return session.scalars(select(Step).where(Step.run_id.in_(run_ids)).order_by(Step.run_id, Step.seq)).all()

    def wait_running(self, run_id: uuid.UUID, timeout_s: float = 30):
        """The run's step, once it is claimed and its call on its way."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            running = [s for s in self.steps([run_id]) if s.status == "running"]
            if running:
                time.sleep(0.5)  # the request leaves right after the claim's commit
                return running[0]
            time.sleep(0.05)
        raise AssertionError(f"run {run_id}'s step never started")

    def wait_finished(self, run_ids: list[uuid.UUID], timeout_s: float = 60) -> None:
        from taskapp.store.models import Run

        deadline = time.monotonic() + timeout_s
        while True:
            with self.factory() as session:
                open_runs = session.scalar(
                    select(func.count())
                    .select_from(Run)
                    .where(Run.id.in_(run_ids), Run.status.in_(("queued", "running")))
                )
            if not open_runs:
                return
            assert time.monotonic() < deadline, f"{open_runs} run(s) never finished"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def quiet(tmp_path_factory):
    with LocalStack(
        tmp_path_factory.mktemp("shutdown"),
        admin_database_url=os.environ.get("TASKAPP_TEST_DATABASE_URL"),
        log_dir=LOGS,
    ) as stack:  # no redis_url: a private Redis server
        from taskapp.settings import load_settings
        from taskapp.store import migrate

        migrate.upgrade(load_settings(stack.env()))
        s = Stack(stack)
        yield s
        s.http.close()


def _exit_of_group(node, timeout_s: float) -> tuple[int, float]:
    """Wait for the node to exit; its exit code and how long it took. Then no process of its
    group may be left (the pool processes and the embedded flusher end with it)."""
    started = time.monotonic()
    code = node.wait(timeout_s)
    took = time.monotonic() - started
    deadline = time.monotonic() + 5
    while True:
        try:
            os.killpg(node.pid, 0)
        except ProcessLookupError:
            return code, took
        assert time.monotonic() < deadline, "a process of the node outlived it"
        time.sleep(0.05)


def _log(name: str) -> str:
    return (LOGS / f"worker-{name}.log").read_text()


def _start(quiet: Stack, name: str):
    (LOGS / f"worker-{name}.log").unlink(missing_ok=True)  # its log is this run's alone
    return quiet.stack.start_worker(name, concurrency=2, **ENV)


CALL_S = 4
CUT_CALL_S = 20


def test_sigterm_to_the_whole_process_group_lets_calls_in_flight_finish_and_commit(quiet):
    """Two calls in flight (one per pool process) when every process of the node gets SIGTERM,
    twice: both finish and commit, by their first claim; the node and its flusher then exit
    cleanly; a fresh node finishes the runs without calling anything again."""
    from taskapp.store.models import LlmCall

    quiet.latency(CALL_S * 1000)
    node = _start(quiet, "term1")
    since = time.time()
    runs = []
    for i in range(2):
        runs.append(quiet.summary(f"stopped mid-call {i}"))
        quiet.wait_running(runs[-1])
    os.killpg(node.pid, signal.SIGTERM)
    time.sleep(0.5)
    os.killpg(node.pid, signal.SIGTERM)  # a second SIGTERM changes nothing: still warm
    code, took = _exit_of_group(node, 60)
    quiet.stack.stop(node)
    log = _log("term1")
    assert code == 0, log[-3000:]
    assert took < CALL_S + 10
    assert "WorkerLostError" not in log and "exited prematurely" not in log
    assert "carries on with its task" in log  # each pool process said why
    assert "flusher exited" not in log  # stopped with the node, not restarted meanwhile
    steps = quiet.steps(runs)
    assert [(s.status, s.attempts) for s in steps] == [("succeeded", 1)] * 2  # committed by the calls in flight

    quiet.latency(0)
    fresh = _start(quiet, "term2")
    try:
        quiet.wait_finished(runs)
    finally:
        quiet.stack.stop(fresh)
    with quiet.factory() as session:
        calls = session.scalars(select(LlmCall).where(LlmCall.batch_id.in_([s.batch_id for s in steps]))).all()
    assert sorted(c.status for c in calls) == ["ok", "ok"]
    time.sleep(1)
    assert quiet.sim_requests(since) == 2  # nothing was sent twice


def test_sigquit_still_cuts_a_warm_shutdown_short_and_the_cut_call_is_recorded_lost(quiet):
    """After a group SIGTERM the node waits for its call; a SIGQUIT to its main process then
    makes it a cold shutdown, which ends the pool process at once (the main process's own
    SIGTERM to it). The cut call is recorded as lost, and a fresh node calls the step again."""
    from taskapp.store.models import LlmCall

    quiet.latency(CUT_CALL_S * 1000)
    node = _start(quiet, "quit1")
    run_id = quiet.summary("cut short")
    first = quiet.wait_running(run_id)
    os.killpg(node.pid, signal.SIGTERM)
    time.sleep(1)
    assert node.poll() is None  # warm: waiting for the call
    os.kill(node.pid, signal.SIGQUIT)
    code, took = _exit_of_group(node, 60)
    quiet.stack.stop(node)
    assert took < CUT_CALL_S / 2  # the call was not waited for

    quiet.latency(0)
    fresh = _start(quiet, "quit2")
    try:
        quiet.wait_finished([run_id])
    finally:
        quiet.stack.stop(fresh)
    (step,) = quiet.steps([run_id])
    assert (step.status, step.attempts) == ("succeeded", 2)
    with quiet.factory() as session:
        calls = session.scalars(
            select(LlmCall).where(LlmCall.batch_id.in_({first.batch_id, step.batch_id})).order_by(LlmCall.created_at)
        ).all()
    assert [(c.status, c.batch_id) for c in calls][0] == ("lost", first.batch_id)
    assert [c.status for c in calls] == ["lost", "ok"]


RUNS = 50
RESTARTS = 5


def test_research_runs_through_group_sigterm_restarts_send_nothing_twice(quiet):
    """The issue's load: 50 research runs on two nodes, 1 s calls, a node stopped by a group
    SIGTERM and started again five times. Every step commits once and every call Gemini
    received is a recorded, committed one."""
    from taskapp.store.models import Event, LlmCall, Run, Step

    quiet.latency(1000)
    nodes = {name: _start(quiet, name) for name in ("g1", "g2")}
    since, started = time.time(), time.monotonic()
    runs = [
        quiet.submit({"workflow": "research", "input": {"question": f"restart question {i}", "max_revisions": 1}})
        for i in range(RUNS)
    ]
    restarts, stop_s, victim = 0, [], "g1"
    try:
        while restarts < RESTARTS:
            time.sleep(1)
            os.killpg(nodes[victim].pid, signal.SIGTERM)
            code, took = _exit_of_group(nodes[victim], 60)
            quiet.stack.stop(nodes[victim])
            assert code == 0
            stop_s.append(took)
            restarts += 1
            nodes[victim] = quiet.stack.start_worker(victim, concurrency=2, **ENV)  # its log goes on
            victim = "g2" if victim == "g1" else "g1"
        quiet.wait_finished(runs, timeout_s=240)
        finished_s = time.monotonic() - started
    finally:
        for proc in nodes.values():
            quiet.stack.stop(proc)
    time.sleep(1.5)  # a call cut mid-way would reach the simulator's log after its latency

    with quiet.factory() as session:
        statuses = Counter(session.scalars(select(Run.status).where(Run.id.in_(runs))))
        steps = session.scalars(select(Step).where(Step.run_id.in_(runs))).all()
        succeeded = Counter(
            e.data["step_id"]
            for e in session.scalars(select(Event).where(Event.run_id.in_(runs), Event.type == "step.succeeded"))
        )
        calls = session.scalars(select(LlmCall).where(LlmCall.batch_id.in_({s.batch_id for s in steps}))).all()
    sim_requests = quiet.sim_requests(since)
    claimed_again = sum(1 for s in steps if s.attempts > 1)
    summary = {
        "runs": RUNS,
        "steps": len(steps),
        "group_sigterm_restarts": restarts,
        "stop_seconds": [round(s, 1) for s in stop_s],
        "steps_claimed_twice": claimed_again,
        "recorded_calls": Counter(c.status for c in calls),
        "simulator_requests": sim_requests,
        "seconds_until_all_finished": round(finished_s, 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "sigterm.json").write_text(json.dumps(summary, indent=1))

    assert statuses == Counter({"succeeded": RUNS}), summary
    assert restarts == RESTARTS and all(s.status == "succeeded" for s in steps), summary
    assert set(succeeded.values()) == {1} and len(succeeded) == len(steps)
    assert claimed_again == 0, summary  # no step was sent to Gemini a second time
    assert {c.status for c in calls} == {"ok"} and len(calls) == len({s.batch_id for s in steps}), summary
    assert sim_requests == len(calls), summary  # and no call was paid for twice
