"""The migrations build exactly the schema the models declare, and come down and up again cleanly."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

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
