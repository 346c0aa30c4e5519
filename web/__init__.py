"""The Flask front end: UI, JSON API and health checks. It never calls an LLM."""

from __future__ import annotations

import logging

from flask import Flask, g
from sqlalchemy.orm import Session, sessionmaker

from taskapp.catalog import shared
from taskapp.logs import configure_logging
from taskapp.outages import DATABASE_ERRORS
from taskapp.settings import Settings, get_settings
from taskapp.store.db import get_engine, session_factory
from web import formatting
from web.errors import register_error_handlers
from web.json_body import JSONRequest, StrictJSONProvider
from web.security import init_security

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """App factory: one app per process (gunicorn) or per test.

    Raises:
        SettingsError: SECRET_KEY is missing or too short (the process must not start).
        DefinitionFileError: a file of WORKFLOWS_PATH is not a valid definition (nor must it).
    """
    settings = settings or get_settings()
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    app.request_class = JSONRequest
    app.config.update(
        SECRET_KEY=settings.require_secret_key(),
        TASKAPP_SETTINGS=settings,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        PERMANENT_SESSION_LIFETIME=settings.session_lifetime_s,
        JSON_SORT_KEYS=False,
        SSE_REDIS_URL=settings.redis_url or "",
        SSE_KEEPALIVE_S=settings.sse_keepalive_s,
        # One limit for every body, JSON or form (413 in the error shape beyond it).
        MAX_CONTENT_LENGTH=settings.max_content_length,
        MAX_FORM_MEMORY_SIZE=settings.max_content_length,
    )
    # gevent serves many requests per process: a larger pool, so greenlets queue for a
    # connection instead of opening and closing overflow connections all the time.
    has_db = bool(settings.database_url)
    app.extensions["taskapp_engine"] = get_engine(settings, settings.web_db_pool_size) if has_db else None
    app.extensions["taskapp_sessions"] = session_factory(settings, settings.web_db_pool_size) if has_db else None
    configure_logging(settings)
    _load_shared_workflows(settings, app.extensions["taskapp_sessions"])

    from web import api, apidocs, auth, health, pages, prometheus, stream, workflow_pages, workflows_api

    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(workflows_api.bp)
    app.register_blueprint(stream.bp)
    app.register_blueprint(prometheus.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(workflow_pages.bp)
    app.register_blueprint(apidocs.bp)
    init_security(
        app,
        settings,
        limited=[api.bp, workflows_api.bp, stream.bp, prometheus.bp],
        caller_key=auth.rate_limit_key,
        sign_in_views=["pages.login", "pages.login_link"],
    )
    register_error_handlers(app)
    formatting.register(app)

    @app.context_processor
    def _caller() -> dict[str, object]:
        return {"caller": g.get("caller")}

    @app.teardown_appcontext
    def _close_db(_: BaseException | None) -> None:
        db = g.pop("db", None)
        if db is not None:
            try:
                db.close()
            except Exception as exc:  # noqa: BLE001 (psycopg raises its own errors from a dropped connection)
                # A connection PostgreSQL dropped (a restart) fails its rollback here, after the
                # response was made: the pool discards it; the answer must not become a 500.
                log.warning("closing a request's session failed (PostgreSQL gone): %s", type(exc).__name__)

    return app


def _load_shared_workflows(settings: Settings, factory: sessionmaker[Session] | None) -> None:
    """Check the deployer's definitions (a bad file raises: the process does not start), then store
    those that changed as new shared versions. PostgreSQL down: a warning; the release step
    (`taskapp db upgrade`) or the next process to start stores them."""
    shared.shared_definitions(settings)
    if factory is None:
        return
    try:
        shared.sync(settings, factory)
    except DATABASE_ERRORS as exc:
        log.warning("could not store the shared workflows (PostgreSQL unavailable): %s", exc)
