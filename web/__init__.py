"""The Flask front end: UI, JSON API and health checks. It never calls an LLM."""

from __future__ import annotations

from flask import Flask, g

from taskapp.db import get_engine, session_factory
from taskapp.logs import configure_logging
from taskapp.settings import Settings, get_settings
from web.errors import register_error_handlers


def create_app(settings: Settings | None = None) -> Flask:
    """App factory: one app per process (gunicorn) or per test."""
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        TASKAPP_SETTINGS=settings,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        JSON_SORT_KEYS=False,
        SSE_REDIS_URL=settings.redis_url or "",
        SSE_KEEPALIVE_S=settings.sse_keepalive_s,
    )
    # gevent serves many requests per process: a larger pool, so greenlets queue for a
    # connection instead of opening and closing overflow connections all the time.
    has_db = bool(settings.database_url)
    app.extensions["taskapp_engine"] = get_engine(settings, settings.web_db_pool_size) if has_db else None
    app.extensions["taskapp_sessions"] = session_factory(settings, settings.web_db_pool_size) if has_db else None
    configure_logging(settings)

    from web import api, apidocs, health, pages, prometheus, stream

    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(stream.bp)
    app.register_blueprint(prometheus.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(apidocs.bp)
    register_error_handlers(app)

    @app.teardown_appcontext
    def _close_db(_: BaseException | None) -> None:
        db = g.pop("db", None)
        if db is not None:
            db.close()

    return app
