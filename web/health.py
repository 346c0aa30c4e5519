"""Liveness and readiness: /readyz checks Postgres, Redis and the broker."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import text

from taskapp.celery_app import app as celery_app
from taskapp.hotstate.client import get_redis
from web.context import db, settings
from web.openapi import answers, documented
from web.responses import Health, Readiness, reply

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@documented(public=True, tags=["health"], resp=answers(200, Health, dependencies=False))
def healthz():
    """The process is up."""
    return reply(Health(status="ok"))


@bp.get("/readyz")
@documented(public=True, tags=["health"], resp=answers(200, Readiness, also={503: Readiness}))
def readyz():
    """Ready to take work: every dependency answers (503 names what is down)."""
    checks = {
        "postgres": _check(lambda: db().execute(text("SELECT 1"))),
        "redis": _check(lambda: get_redis(settings().require("redis_url")).ping()),
        "broker": _check(_broker_ping),
    }
    ok = all(v == "ok" for v in checks.values())
    return reply(Readiness(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503)


def _broker_ping() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {type(exc).__name__}: {str(exc)[:200]}"
