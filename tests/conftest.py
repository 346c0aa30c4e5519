"""Test harness on real services.

PostgreSQL and Redis come from TASKAPP_TEST_DATABASE_URL / TASKAPP_TEST_REDIS_URL
when set (CI: the machine's shared servers), else embedded ones start here. Either
way the session gets a database of its own (dropped at the end) and a Redis db
number of its own (flushed first). The Gemini simulator serves real HTTP to the
real google-genai SDK, and Celery workers are real processes.

Tests live by what they need: tests/unit (no services), tests/integration (PostgreSQL,
Redis, the simulator, the web app; no workers), tests/system (worker processes end to
end, the browser) and tests/faults (kills, restarts, outages, fleets). Those under system
and faults are marked `slow` here, by directory.

This file holds fixtures and collection hooks only; the helpers tests call (make_team,
auth, wait_for_run, ...) live in tests/helpers.py.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskapp.dev.localstack import LocalStack
from tests.helpers import ARTIFACTS, WORKER_ENV, make_team

TESTS = Path(__file__).resolve().parent
LEVELS = ("unit", "integration", "system", "faults")
SLOW_LEVELS = {"system", "faults"}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: `-m "not slow"` sees these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark system and fault tests `slow`, and keep every level honest: a test lives in one of
    the four directories, and a unit test never asks for the services (the `stack` fixture)."""
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        level = parts[0] if len(parts) > 1 else None
        if level not in LEVELS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(LEVELS)}}}/")
        if level in SLOW_LEVELS:
            item.add_marker(pytest.mark.slow)
        if level == "unit" and "stack" in item.fixturenames:
            raise pytest.UsageError(
                f"{item.nodeid}: a unit test uses no services, but it needs the `stack` "
                "fixture (directly or through another fixture); it belongs in tests/integration"
            )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        tmp_path_factory.mktemp("stack"),
        admin_database_url=os.environ.get("TASKAPP_TEST_DATABASE_URL"),
        redis_url=os.environ.get("TASKAPP_TEST_REDIS_URL"),
        log_dir=ARTIFACTS,
    ) as s:
        # The test process itself (Flask app, Celery producer) runs with the same settings.
        env = s.env()
        for key in (
            "DATABASE_URL",
            "REDIS_URL",
            "GEMINI_BASE_URL",
            "NO_PROXY",
            "GEMINI_TIMEOUT_MS",
            "SECRET_KEY",
            "WORKFLOWS_PATH",
        ):
            os.environ[key] = env[key]
        os.environ.pop("GEMINI_API_KEY", None)
        from taskapp.catalog.shared import release
        from taskapp.settings import get_settings

        get_settings.cache_clear()
        release(get_settings())
        yield s


@pytest.fixture(scope="session")
def settings(stack: LocalStack):
    from taskapp.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def workers(stack: LocalStack) -> Iterator[list[subprocess.Popen]]:
    """Two worker processes (two nodes), shared by the tests that need them (settings: WORKER_ENV)."""
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


@pytest.fixture()
def team(settings) -> tuple[uuid.UUID, str]:
    return make_team(settings)


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


@pytest.fixture()
def no_open_runs(settings) -> None:
    """End every run earlier tests left open, before the test. Without workers (tests/integration)
    nothing finishes them, and a sweep the test drives by hand would start them and batch their
    steps together with its own."""
    from sqlalchemy import select

    from taskapp.pipeline import orchestrator
    from taskapp.store.db import session_factory
    from taskapp.store.models import FINAL_RUN_STATUSES, Run

    with session_factory(settings).begin() as session:
        for run_id in session.scalars(select(Run.id).where(Run.status.not_in(FINAL_RUN_STATUSES))).all():
            orchestrator.cancel_run(session, run_id)


@pytest.fixture()
def queued_run(settings) -> Iterator[Callable[[uuid.UUID], uuid.UUID]]:
    """Make runs that stay open: stored, never published, and dated an hour ahead, so the workers'
    sweeper (which starts runs whose start message was lost) leaves them alone while the test
    drives them by hand. They end with the test: later tests need a quiet fleet."""
    from datetime import UTC, datetime, timedelta

    from taskapp.pipeline import orchestrator
    from taskapp.store.db import session_factory
    from taskapp.store.runs import create_run

    made: list[uuid.UUID] = []

    def make(team_id: uuid.UUID) -> uuid.UUID:
        with session_factory(settings).begin() as session:
            run, _ = create_run(session, team_id=team_id, workflow="summarize", input={"text": "x"}, options={})
            run.created_at = datetime.now(UTC) + timedelta(hours=1)
        made.append(run.id)
        return run.id

    yield make
    with session_factory(settings).begin() as session:
        for run_id in made:
            orchestrator.cancel_run(session, run_id)


# pgserver logs from an atexit hook after pytest has closed its capture streams.
logging.getLogger("pgserver").addHandler(logging.NullHandler())
logging.getLogger("pgserver").propagate = False
