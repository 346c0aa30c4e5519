"""Test harness on real services.

PostgreSQL and Redis come from TASKAPP_TEST_DATABASE_URL / TASKAPP_TEST_REDIS_URL
when set (CI: the machine's shared servers), else embedded ones start here. Either
way the session gets a database of its own (dropped at the end) and a Redis db
number of its own (flushed first). The Gemini simulator serves real HTTP to the
real google-genai SDK, and Celery workers are real processes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskapp.dev.localstack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
WORKER_ENV = {"BATCH_MAX_WAIT_MS": "200", "SWEEP_INTERVAL_S": "1", "RUN_NUDGE_AFTER_S": "2", "STEP_LEASE_S": "2"}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("stack"),
                    admin_database_url=os.environ.get("TASKAPP_TEST_DATABASE_URL"),
                    redis_url=os.environ.get("TASKAPP_TEST_REDIS_URL"), log_dir=ARTIFACTS) as s:
        # The test process itself (Flask app, Celery producer) runs with the same settings.
        env = s.env()
        for key in ("DATABASE_URL", "REDIS_URL", "GEMINI_BASE_URL", "NO_PROXY", "GEMINI_TIMEOUT_MS", "SECRET_KEY"):
            os.environ[key] = env[key]
        os.environ.pop("GEMINI_API_KEY", None)
        from taskapp.settings import get_settings
        from taskapp.store import migrate

        get_settings.cache_clear()
        migrate.upgrade(get_settings())
        yield s


@pytest.fixture(scope="session")
def settings(stack: LocalStack):
    from taskapp.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def workers(stack: LocalStack) -> Iterator[list[subprocess.Popen]]:
    """Two worker processes (two nodes), shared by the tests that need them."""
    # A short batching window keeps multi-phase runs quick; the window itself is tested on its own.
    procs = [stack.start_worker(name, **WORKER_ENV) for name in ("w1", "w2")]
    yield procs
    for proc in procs:
        stack.stop(proc)


@pytest.fixture()
def app(settings):
    from web import create_app

    flask_app = create_app(settings)
    flask_app.config.update(TESTING=True)
    return flask_app


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def db_session(settings):
    from taskapp.store.db import session_factory

    session = session_factory(settings)()
    yield session
    session.close()


def make_team(settings, name: str | None = None) -> tuple[uuid.UUID, str]:
    """A team of its own for one test (tests never see each other's runs)."""
    from taskapp.store.db import session_factory
    from taskapp.store.teams import create_team

    with session_factory(settings).begin() as session:
        team, key = create_team(session, name or f"team-{uuid.uuid4().hex[:10]}")
        return team.id, key


@pytest.fixture()
def team(settings) -> tuple[uuid.UUID, str]:
    return make_team(settings)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture()
def batcher(stack):
    """The shared batch buffers, as the workers see them."""
    import redis

    from taskapp.hotstate.buffers import Batcher

    return Batcher(redis.Redis.from_url(stack.redis_url))


@pytest.fixture()
def no_background_sweep(batcher):
    """Hold the fleet's sweep lease, so the workers' flushers skip their sweeps (a test that
    drives the sweeper by hand would otherwise race them for the same expired lease)."""
    from taskapp.pipeline.flusher import SWEEP_LOCK

    deadline = time.monotonic() + 30
    while not batcher.client.set(SWEEP_LOCK, "test", nx=True, px=60_000):  # a sweep under way: let it end
        assert time.monotonic() < deadline, "the sweep lease was never free"
        time.sleep(0.05)
    yield
    batcher.client.delete(SWEEP_LOCK)


def submit_summary(client, key: str, text: str, **options) -> str:
    """Submit a one-step `summarize` run through the API; its id."""
    resp = client.post("/api/runs", headers=auth(key),
                       json={"workflow": "summarize", "input": {"text": text}, "options": options})
    assert resp.status_code == 202, resp.json
    return resp.json["id"]


def run_steps(db_session, run_ids: list[str]):
    """The steps of these runs, freshly read."""
    from sqlalchemy import select

    from taskapp.store.models import Step

    db_session.expire_all()
    return list(db_session.scalars(select(Step).where(Step.run_id.in_([uuid.UUID(str(r)) for r in run_ids]))))


def wait_for_run(settings, run_id: str | uuid.UUID, timeout_s: float = 60):
    """Poll Postgres until the run ends; return it with its steps loaded."""
    from sqlalchemy.orm import selectinload

    from taskapp.store.db import session_factory
    from taskapp.store.models import FINAL_RUN_STATUSES, Run

    deadline = time.monotonic() + timeout_s
    while True:
        with session_factory(settings)() as session:
            run = session.get(Run, uuid.UUID(str(run_id)), options=[selectinload(Run.steps)])
            if run is not None and run.status in FINAL_RUN_STATUSES:
                return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not finish in {timeout_s}s (status {run and run.status})")
        time.sleep(0.1)


# pgserver logs from an atexit hook after pytest has closed its capture streams.
logging.getLogger("pgserver").addHandler(logging.NullHandler())
logging.getLogger("pgserver").propagate = False
