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
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@dataclass
class Stack:
    database_url: str
    redis_url: str
    sim: object
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def sim_url(self) -> str:
        return self.sim.url

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(DATABASE_URL=self.database_url, REDIS_URL=self.redis_url, GEMINI_BASE_URL=self.sim_url,
                   NO_PROXY="127.0.0.1,localhost", LOG_FORMAT="json", GEMINI_TIMEOUT_MS="20000")
        env.pop("GEMINI_API_KEY", None)
        env.update(extra)
        return env


def _private_database(admin_url: str, stack: ExitStack) -> str:
    """A fresh database on the given server, dropped when the session ends."""
    name = f"taskapp_test_{os.getpid()}_{secrets.token_hex(3)}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    stack.callback(drop)
    base, sep, query = plain.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (sep + query if query else "")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from taskapp.embedded import EmbeddedPostgres, EmbeddedRedis
    from taskapp.llm import simulator

    ARTIFACTS.mkdir(exist_ok=True)
    with ExitStack() as exits:
        admin = os.environ.get("TASKAPP_TEST_DATABASE_URL")
        if not admin:
            pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
            admin = pg.start()
            exits.callback(pg.stop)
        database_url = _private_database(admin, exits)
        redis_url = os.environ.get("TASKAPP_TEST_REDIS_URL")
        if not redis_url:
            rd = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
            redis_url = rd.start()
            exits.callback(rd.stop)
        redis.Redis.from_url(redis_url).flushdb()
        sim = simulator.start(latency_ms=0)
        exits.callback(sim.shutdown)
        s = Stack(database_url=database_url, redis_url=redis_url, sim=sim)
        # The test process itself (Flask app, Celery producer) reads the same settings.
        os.environ.update({k: v for k, v in s.env().items() if k in (
            "DATABASE_URL", "REDIS_URL", "GEMINI_BASE_URL", "NO_PROXY", "GEMINI_TIMEOUT_MS")})
        from taskapp import migrate
        from taskapp.settings import get_settings

        get_settings.cache_clear()
        migrate.upgrade(get_settings())
        yield s


@pytest.fixture(scope="session")
def settings(stack: Stack):
    from taskapp.settings import get_settings

    return get_settings()


def start_worker(stack: Stack, name: str, concurrency: int = 2, **env: str) -> subprocess.Popen:
    """A real `celery worker` process; its log goes to test-artifacts/."""
    log = open(ARTIFACTS / f"worker-{name}.log", "ab")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "taskapp.celery_app", "worker", "-n", f"{name}@%h",
         f"--concurrency={concurrency}", "--loglevel=INFO", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=stack.env(**env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    proc.log_file = log  # type: ignore[attr-defined]
    _wait_ready(proc, name)
    return proc


def _wait_ready(proc: subprocess.Popen, name: str, timeout_s: float = 60) -> None:
    from taskapp.celery_app import app

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited ({proc.returncode}); see test-artifacts/worker-{name}.log")
        replies = app.control.ping(timeout=0.5)
        if any(name in next(iter(r)) for r in replies):
            return
    raise RuntimeError(f"worker {name} not ready after {timeout_s}s")


def stop_worker(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.log_file.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def workers(stack: Stack) -> Iterator[list[subprocess.Popen]]:
    """Two worker processes (two nodes), shared by the tests that need them."""
    procs = [start_worker(stack, "w1"), start_worker(stack, "w2")]
    yield procs
    for proc in procs:
        stop_worker(proc)


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
    from taskapp.db import session_factory

    session = session_factory(settings)()
    yield session
    session.close()


def make_team(settings, name: str | None = None) -> tuple[uuid.UUID, str]:
    """A team of its own for one test (tests never see each other's runs)."""
    from taskapp import store
    from taskapp.db import session_factory

    with session_factory(settings).begin() as session:
        team, key = store.create_team(session, name or f"team-{uuid.uuid4().hex[:10]}")
        return team.id, key


@pytest.fixture()
def team(settings) -> tuple[uuid.UUID, str]:
    return make_team(settings)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for_run(settings, run_id: str | uuid.UUID, timeout_s: float = 60):
    """Poll Postgres until the run ends; return it with its steps loaded."""
    from sqlalchemy.orm import selectinload

    from taskapp.db import session_factory
    from taskapp.models import FINAL_RUN_STATUSES, Run

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
