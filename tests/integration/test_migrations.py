"""The migrations build exactly the schema the models declare, and come down and up again cleanly."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from taskapp.settings import load_settings
from taskapp.store import migrate
from taskapp.store.models import Base


@pytest.fixture()
def empty_database(settings) -> Iterator[str]:
    """A database of its own on the tests' server, dropped afterwards."""
    server = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    base, _, query = server.partition("?")
    name = f"taskapp_migrations_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_match_the_models_and_round_trip(empty_database):
    settings = load_settings({"DATABASE_URL": empty_database})
    config = migrate.alembic_config(settings)
    engine = create_engine(settings.database_url)
    try:
        migrate.upgrade(settings)
        with engine.connect() as conn:
            # Tables, columns, indexes (partial ones included) and constraints: no drift.
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(settings)
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0009_adds_cached_tokens_to_existing_rows_and_comes_down_again(empty_database):
    """Calls and steps recorded before 0009 read as having no cached tokens; 0009 down removes the columns."""
    settings = load_settings({"DATABASE_URL": empty_database})
    config = migrate.alembic_config(settings)
    engine = create_engine(settings.database_url)

    def columns(table: str) -> set[str]:
        return {c["name"] for c in inspect(engine).get_columns(table)}

    try:
        command.upgrade(config, "0008")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO llm_calls (id, batch_id, agent, model, step_count, status, tokens_in, tokens_out,"
                " latency_ms, cost_usd) VALUES (gen_random_uuid(), gen_random_uuid(), 'a', 'm', 1, 'ok', 10, 2, 1,"
                " 0.00000123)"
            )
        assert "tokens_cached" not in columns("llm_calls")
        command.upgrade(config, "0009")
        with engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT tokens_cached, cost_usd FROM llm_calls").one()
            assert tuple(row) == (0, Decimal("0.00000123"))
        assert "tokens_cached" in columns("steps")
        command.downgrade(config, "0008")
        assert "tokens_cached" not in columns("llm_calls") | columns("steps")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM llm_calls").scalar() == 1
    finally:
        engine.dispose()
