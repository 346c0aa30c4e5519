"""Which errors mean "a dependency is down for now", and waiting one out (real connections to closed ports)."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from taskapp.dev.embedded import free_port
from taskapp.outages import dependency_of, retry_database


def _refused_database_error() -> DBAPIError:
    engine = create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x", connect_args={"connect_timeout": 1}
    )
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("nothing listens there, the connection must fail")


def test_refused_connections_name_their_dependency(settings):
    assert dependency_of(_refused_database_error()) == "postgres"
    with pytest.raises(redis.ConnectionError) as refused:
        redis.Redis(port=free_port(), socket_connect_timeout=1).ping()
    assert dependency_of(refused.value) == "redis"
    # A bad statement on a live database is no outage: retrying it would fail the same way.
    engine = create_engine(settings.database_url)
    try:
        with pytest.raises(DBAPIError) as bad, engine.connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))
    finally:
        engine.dispose()
    assert dependency_of(bad.value) is None


def test_retry_database_waits_out_an_outage_but_not_a_bad_statement(settings):
    calls = []

    def down() -> None:
        calls.append(1)
        raise _refused_database_error()

    with pytest.raises(DBAPIError):
        retry_database(down, budget_s=1.0, what="test")
    assert len(calls) >= 3  # retried for about its budget, then gave up

    calls.clear()
    engine = create_engine(settings.database_url)

    def bad() -> None:
        calls.append(1)
        with engine.connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))

    try:
        with pytest.raises(DBAPIError):
            retry_database(bad, budget_s=5.0, what="test")
    finally:
        engine.dispose()
    assert len(calls) == 1

    attempts = iter([_refused_database_error(), _refused_database_error(), None])

    def back_after_two() -> str:
        error = next(attempts)
        if error is not None:
            raise error
        return "committed"

    assert retry_database(back_after_two, budget_s=10.0, what="test") == "committed"
