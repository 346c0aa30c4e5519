"""PostgreSQL and Redis restarted with runs in flight: nothing lost, nothing twice, every run ends.

Both servers are private embedded ones started here (never the machine's shared
services), so they can be stopped and started again. Redis runs without persistence:
its restart loses every queued message, batch buffer, chord counter and quota
window, the harshest case; what is committed in PostgreSQL must carry every run
through. Meanwhile /readyz names what is down and the API answers 503 with
Retry-After. A summary of each fault goes to test-artifacts/ for docs/reliability.md.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select

from taskapp.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from taskapp.dev.localstack import LocalStack
from tests.helpers import ARTIFACTS

RUNS = 20
OUTAGE_S = 6
ENV = {
    "STEP_LEASE_S": "3",
    "BATCH_STRANDED_S": "6",
    "SWEEP_INTERVAL_S": "1",
    "RUN_NUDGE_AFTER_S": "3",
    "BATCH_MAX_WAIT_MS": "200",
    "CELERY_TASK_EVENTS": "false",
}


class Fleet:
    """A private stack on private servers: web, two worker nodes, a team."""

    def __init__(self, stack: LocalStack, pg: EmbeddedPostgres, rd: EmbeddedRedis) -> None:
        from taskapp.settings import load_settings
        from taskapp.store.db import session_factory

        self.stack, self.pg, self.rd = stack, pg, rd
        self.factory = session_factory(load_settings(stack.env()))
        self.url, self.web = stack.start_web()
        self.nodes = [stack.start_worker(name, concurrency=2, **ENV) for name in ("r1", "r2")]
        self.team_id: uuid.UUID | None = None
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def new_team(self, name: str) -> None:
        """Each fault gets a team of its own, so its counts are its own."""
        from taskapp.store.teams import create_team

        with self.factory.begin() as session:
            team, key = create_team(session, name)
            self.team_id = team.id
        self.http.headers["Authorization"] = f"Bearer {key}"

    def close(self) -> None:
        self.http.close()
        for proc in [*self.nodes, self.web]:
            self.stack.stop(proc)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("restarts")
    pg = EmbeddedPostgres(workdir / "postgres")
    rd = EmbeddedRedis(workdir / "redis", persist=False)
    pg.start()
    rd.start()
    try:
        with LocalStack(
            workdir, admin_database_url=pg.url, redis_url=rd.url, log_dir=ARTIFACTS / "restarts", sim_latency_ms=500
        ) as stack:
            from taskapp.settings import load_settings
            from taskapp.store import migrate

            migrate.upgrade(load_settings(stack.env()))
            f = Fleet(stack, pg, rd)
            try:
                yield f
            finally:
                f.close()
    finally:
        rd.stop()
        pg.stop()


def _submit(http: httpx.Client, idempotency_key: str) -> httpx.Response:
    return http.post(
        "/api/runs",
        headers={"Idempotency-Key": idempotency_key},
        json={"workflow": "research", "input": {"question": f"restart question {idempotency_key}", "max_revisions": 1}},
    )


def _succeeded_steps(fleet: Fleet) -> dict[uuid.UUID, dict]:
    from taskapp.store.models import Run, Step

    with fleet.factory() as session:
        return {
            s.id: s.output
            for s in session.scalars(
                select(Step).join(Run).where(Run.team_id == fleet.team_id, Step.status == "succeeded")
            )
        }


def _open_runs(fleet: Fleet) -> int:
    from taskapp.store.models import Run

    with fleet.factory() as session:
        return session.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.team_id == fleet.team_id, Run.status.in_(("queued", "running")))
        )


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


def _outage(fleet: Fleet, part: str, down: Callable[[], None], up: Callable[[], None]) -> dict:
    """Submit runs, take `part` down once they are under way, bring it back; check and summarise."""
    from taskapp.store.models import Event, LlmCall, Run, Step

    fleet.new_team(part)
    sim_before = len(httpx.get(f"{fleet.stack.sim_url}/_sim/requests").json())
    for i in range(RUNS):
        assert _submit(fleet.http, f"{part}-{i}").status_code == 202
    _wait(lambda: len(_succeeded_steps(fleet)) >= 15, 60, "no step finished before the outage")
    committed_before = _succeeded_steps(fleet)

    down()
    went_down = time.monotonic()
    ready = fleet.http.get("/readyz")
    during = _submit(fleet.http, f"{part}-during")
    listing = fleet.http.get("/api/runs")
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - went_down)))
    up()
    came_back = time.monotonic()

    # What clients saw meanwhile: which part is down, and 503 + Retry-After, never a 500.
    assert ready.status_code == 503, ready.text
    checks = ready.json()["checks"]
    assert checks[part].startswith("error"), checks
    assert checks["postgres" if part != "postgres" else "redis"] == "ok", checks
    assert during.status_code == 503 and during.headers["Retry-After"] == "5", during.text
    assert during.json()["error"]["code"] == "unavailable", during.text
    if part == "postgres":
        assert listing.status_code == 503 and listing.json()["error"]["details"] == {"dependency": "postgres"}
    else:
        assert listing.status_code == 200  # reads need only PostgreSQL

    # The client retries its refused submission with the same key: exactly one run results.
    _wait(lambda: _submit(fleet.http, f"{part}-during").status_code == 202, 30, "submission never accepted")
    assert _submit(fleet.http, f"{part}-during").json()["created"] is False
    _wait(lambda: _open_runs(fleet) == 0, 180, f"runs never finished after the {part} restart")
    recovered_s = time.monotonic() - came_back
    assert fleet.http.get("/readyz").status_code == 200
    # The same worker processes carried on: they reconnected rather than exited.
    assert all(node.poll() is None for node in fleet.nodes), [node.returncode for node in fleet.nodes]

    with fleet.factory() as session:
        runs = session.scalars(select(Run).where(Run.team_id == fleet.team_id)).all()
        run_ids = [r.id for r in runs]
        steps = session.scalars(select(Step).where(Step.run_id.in_(run_ids))).all()
        events = session.scalars(select(Event).where(Event.run_id.in_(run_ids))).all()
        billed = session.scalars(
            select(LlmCall).where(
                LlmCall.status != "error", LlmCall.batch_id.in_(select(Step.batch_id).where(Step.run_id.in_(run_ids)))
            )
        ).all()
    sim_requests = len(httpx.get(f"{fleet.stack.sim_url}/_sim/requests").json()) - sim_before

    lost = sum(1 for r in runs if r.status != "succeeded")
    assert len(runs) == RUNS + 1 and lost == 0, Counter(r.status for r in runs)
    assert len(committed_before) < len(steps)  # the outage came with work in flight
    assert all(s.status == "succeeded" and s.output for s in steps)
    # Nothing committed before the outage was lost or redone.
    after = _succeeded_steps(fleet)
    assert all(after[sid] == output for sid, output in committed_before.items())
    succeeded = Counter(e.data["step_id"] for e in events if e.type == "step.succeeded")
    assert len(succeeded) == len(steps) and set(succeeded.values()) == {1}
    assert Counter(e.run_id for e in events if e.type == "run.succeeded") == Counter(set(run_ids))
    # Billing: one recorded call per committed batch; the simulator saw no call beyond those.
    committed_batches = {s.batch_id for s in steps}
    assert len(billed) == len(committed_batches)
    double_billed = sim_requests - len(billed)
    assert double_billed == 0, f"{double_billed} calls reached Gemini and were not the committed ones"

    summary = {
        "fault": f"{part} restarted",
        "runs": len(runs),
        "steps": len(steps),
        "committed_before_outage": len(committed_before),
        "outage_s": OUTAGE_S,
        "lost": lost,
        "steps_committed_twice": 0,
        "double_billed": double_billed,
        "recorded_calls": len(billed),
        "committed_batches": len(committed_batches),
        "seconds_from_restart_to_all_finished": round(recovered_s, 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"restart-{part}.json").write_text(json.dumps(summary, indent=1))
    return summary


def test_postgres_restart_mid_load_loses_nothing(fleet):
    def up() -> None:
        fleet.pg.start()

    _outage(fleet, "postgres", fleet.pg.stop, up)


def test_redis_restart_mid_load_loses_nothing(fleet):
    def up() -> None:
        fleet.rd.start()

    _outage(fleet, "redis", fleet.rd.stop, up)
