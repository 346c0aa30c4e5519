"""A private, throwaway stack of real services for tests and benchmarks.

Given server URLs it takes a database and a Redis db of its own on them (shared
servers stay untouched apart from that); without them it starts embedded servers.
It runs the Gemini simulator in-process (real HTTP), real `celery worker`
processes and a real gunicorn web process, and stops all it started.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import redis

from taskapp.child_processes import die_with_parent
from taskapp.dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from taskapp.dev.gemini_sim import server as simulator
from taskapp.service_urls import normalize_database_url
from taskapp.settings import child_environment, load_settings
from taskapp.worker_roles import Role, role_options

ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests and benchmarks run from one
EXAMPLES = ROOT / "examples" / "workflows"  # the shared workflows of `make run`
# The test and benchmark stacks add a variant or two of the examples (e.g. an agent shared across teams).
TEST_WORKFLOWS = f"{EXAMPLES},{ROOT / 'tests' / 'workflows'}"


class LocalStack:
    def __init__(
        self,
        workdir: Path,
        *,
        admin_database_url: str | None = None,
        redis_url: str | None = None,
        sim_latency_ms: int = 0,
        sim_in_process: bool = True,
        log_dir: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.admin_database_url = admin_database_url
        self.redis_url = redis_url
        self.log_dir = log_dir or self.workdir
        self.sim_latency_ms = sim_latency_ms
        self.sim_in_process = sim_in_process
        self.database_url = ""
        self.sim: simulator.SimulatorServer | None = None  # in-process: tests read its state directly
        self.sim_url = ""
        self.secret_key = secrets.token_urlsafe(48)  # the web refuses to start without one
        self._exits = ExitStack()
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> LocalStack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        admin = self.admin_database_url
        if not admin:
            pg = EmbeddedPostgres(self.workdir / "postgres")
            admin = pg.start()
            self._exits.callback(pg.stop)
        self.database_url = self._private_database(admin)
        if not self.redis_url:
            rd = EmbeddedRedis(self.workdir / "redis", persist=False)
            self.redis_url = rd.start()
            self._exits.callback(rd.stop)
        redis_url = self.redis_url
        redis.Redis.from_url(redis_url).flushdb()
        self._exits.callback(lambda: redis.Redis.from_url(redis_url).flushdb())
        if self.sim_in_process:
            self.sim = simulator.start(latency_ms=self.sim_latency_ms)
            self._exits.callback(self.sim.server_close)
            self._exits.callback(self.sim.shutdown)
            self.sim_url = self.sim.url
        else:  # its own process: benchmarks must not measure our GIL
            port = free_port()
            self.sim_url = f"http://127.0.0.1:{port}"
            self.spawn(
                "gemini-sim",
                [
                    sys.executable,
                    "-m",
                    "taskapp.cli",
                    "gemini-sim",
                    "--port",
                    str(port),
                    "--latency-ms",
                    str(self.sim_latency_ms),
                ],
            )
            self._wait_http(f"{self.sim_url}/_sim/health", "the Gemini simulator")
        return self

    def _private_database(self, admin_url: str) -> str:
        name = f"taskapp_{os.getpid()}_{secrets.token_hex(3)}"
        plain = normalize_database_url(admin_url).replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        self._exits.callback(drop)
        base, sep, query = plain.partition("?")
        return normalize_database_url(base.rsplit("/", 1)[0] + f"/{name}" + (sep + query if query else ""))

    def env(self, **extra: str | None) -> dict[str, str]:
        """The environment every process of this stack runs with."""
        assert self.sim_url, "start() first"
        base: dict[str, str | None] = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "GEMINI_BASE_URL": self.sim_url,
            "GEMINI_API_KEY": None,
            "LOG_FORMAT": "json",
            "GEMINI_TIMEOUT_MS": "20000",
            "SECRET_KEY": self.secret_key,
            "WORKFLOWS_PATH": TEST_WORKFLOWS,
        }
        return child_environment(**(base | extra))

    def spawn(self, name: str, args: list[str], **env: str | None) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop())
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        proc.log_file = log  # type: ignore[attr-defined]
        self._procs.append(proc)
        return proc

    def start_worker(
        self,
        name: str,
        concurrency: int | None = 2,
        app: str = "taskapp.celery_app",
        role: Role = "all",
        **env: str | None,
    ) -> subprocess.Popen:
        """A real `celery worker` node, returned once it answers a ping.

        `role` as the Procfile's `taskapp worker <role>` sets it (queues; for `llm` the pool and
        concurrency of LLM_WORKER_POOL / LLM_WORKER_CONCURRENCY in `env`); `concurrency`, when
        given, overrides the role's.
        """
        options = role_options(role, load_settings(self.env(**env)))
        if concurrency is not None:
            options.append(f"--concurrency={concurrency}")
        proc = self.spawn(
            f"worker-{name}",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                app,
                "worker",
                "-n",
                f"{name}@%h",
                *options,
                "--loglevel=INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            **env,
        )
        self._wait_worker(proc, name)
        return proc

    def _wait_worker(self, proc: subprocess.Popen, name: str, timeout_s: float = 60) -> None:
        from celery import Celery

        probe = Celery(broker=self.redis_url)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {name} exited ({proc.returncode}); see {self.log_dir}")
                if any(name in next(iter(r)) for r in probe.control.ping(timeout=0.5)):
                    return
            raise RuntimeError(f"worker {name} not ready after {timeout_s}s")
        finally:
            probe.close()

    def start_web(self, workers: int = 1, **env: str | None) -> tuple[str, subprocess.Popen]:
        """gunicorn with gevent workers, as the Procfile runs it; returns its base URL and process."""
        port = free_port()
        proc = self.spawn(
            "web",
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "web:create_app()"],
            PORT=str(port),
            WEB_CONCURRENCY=str(workers),
            **env,
        )
        url = f"http://127.0.0.1:{port}"
        self._wait_http(f"{url}/healthz", "web")
        return url, proc

    def _wait_http(self, url: str, what: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{what} did not come up; see the logs in {self.log_dir}")

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        proc.log_file.close()  # type: ignore[attr-defined]
        if proc in self._procs:
            self._procs.remove(proc)

    def close(self) -> None:
        for proc in list(self._procs):
            self.stop(proc)
        self._exits.close()
