"""Per-request access to settings and the database session."""

from __future__ import annotations

from typing import Any

import redis
from flask import current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taskapp.settings import Settings


def settings() -> Settings:
    return current_app.config["TASKAPP_SETTINGS"]


def engine() -> Engine:
    """The web process's engine, for reads that need no Session (streams)."""
    bound = current_app.extensions["taskapp_engine"]
    if bound is None:
        settings().require("database_url")
    return bound


def gate_usage() -> dict[str, dict[str, Any]]:
    """Each model's quota use as the fleet's gate sees it (None where Redis is down)."""
    from taskapp.hotstate.quota_gate import gate_for

    try:
        gate = gate_for(settings(), lease_ms=1)
        return {model: gate.usage(model) for model in settings().gemini_models}
    except redis.RedisError:
        return {}


def db() -> Session:
    """The request's session (closed at teardown; views commit what they own)."""
    if "db" not in g:
        factory = current_app.extensions["taskapp_sessions"]
        if factory is None:
            settings().require("database_url")
        g.db = factory()
    return g.db
