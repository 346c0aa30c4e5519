"""Schema migrations (Alembic), run by `taskapp db upgrade`, the Procfile's release phase and dev."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from taskapp.settings import Settings, get_settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings | None = None) -> Config:
    settings = settings or get_settings()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", settings.require("database_url").replace("%", "%%"))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)
