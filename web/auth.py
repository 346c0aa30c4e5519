"""Who is calling: a bearer API key (API clients) or a browser session bound to a key.

Each key belongs to a team; a team sees only its own runs. Both are checked against
PostgreSQL on every request (`taskapp.credentials`), so a revoked key or a signed-out
session stops working on every web process at once. The session cookie holds only a
random token, never a team id. A cookie-authenticated request that changes anything
must carry the session's CSRF token (fail closed: missing or empty never matches).
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import g, redirect, request, session, url_for
from flask_wtf.csrf import CSRFError

from taskapp.store import metrics
from taskapp.store.models import Run
from taskapp.store.runs import get_run
from taskapp.store.teams import (
    Caller,
    caller_for_key,
    caller_for_session,
    end_session,
    open_session,
    use_login_link,
)
from web.context import db, settings
from web.errors import ApiError
from web.security import address_key, csrf

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_TOKEN = "sid"


def _bearer_caller() -> Caller | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "use 'Authorization: Bearer <api key>'")
    caller = caller_for_key(db(), key.strip())
    if caller is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key")
    return caller


def session_caller() -> Caller | None:
    """The browser session's caller; an ended, expired or revoked session is forgotten."""
    token = session.get(SESSION_TOKEN)
    if not token:
        return None
    caller = caller_for_session(db(), token)
    if caller is None:
        session.clear()
    return caller


def current_caller() -> Caller | None:
    """Bearer key first, else the session cookie (unsafe methods then need the CSRF token)."""
    if "caller" in g:
        return g.caller
    caller = _bearer_caller()
    if caller is None:
        caller = session_caller()
        if caller is not None and request.method not in SAFE_METHODS:
            try:
                csrf.protect()
            except CSRFError as exc:
                raise ApiError(403, "csrf_failed", f"{exc.description} (send the page's X-CSRF-Token)") from None
    g.caller = caller
    return caller


def rate_limit_key() -> str:
    """Whose budget a request spends: its team's, the operators' (METRICS_TOKEN), else its address's.

    Bad credentials spend the address's budget and get their 401 from the view.
    """
    if _sent_metrics_token():
        return "operators"
    try:
        caller = current_caller()
    except ApiError:
        caller = None
    return f"team:{caller.team_id}" if caller is not None else address_key()


def _sent_metrics_token() -> bool:
    token = settings().metrics_token
    if not token:
        return False
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(sent.strip().encode(), token.encode())


def require_team(view: Callable[..., Any]) -> Callable[..., Any]:
    """API views: 401 without a valid key or session."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = current_caller()
        if caller is None:
            raise ApiError(
                401, "unauthorized", "an API key is required", headers={"WWW-Authenticate": 'Bearer realm="taskapp"'}
            )
        g.team_id = caller.team_id
        return view(*args, **kwargs)

    return wrapper


def metrics_scope() -> metrics.Scope:
    """Whose metrics the caller may read: METRICS_TOKEN or an operator team, the fleet; a team, its own.

    Raises:
        ApiError: 401 without credentials.
    """
    if _sent_metrics_token():
        return metrics.FLEET
    caller = current_caller()
    if caller is None:
        raise ApiError(
            401,
            "unauthorized",
            "metrics need credentials (METRICS_TOKEN or an API key)",
            headers={"WWW-Authenticate": 'Bearer realm="taskapp-metrics"'},
        )
    return metrics.Scope.of(caller.team_id, caller.is_operator)


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Pages: to the sign-in page without a live session."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = session_caller()
        if caller is None:
            return redirect(url_for("pages.login"))
        g.caller, g.team_id = caller, caller.team_id
        return view(*args, **kwargs)

    return wrapper


def _start_session(api_key_id: uuid.UUID) -> None:
    lifetime = timedelta(seconds=settings().session_lifetime_s)
    previous = session.get(SESSION_TOKEN)
    if previous:  # a shared browser signing in again: the old session ends, not only its cookie
        end_session(db(), previous)
    token = open_session(db(), api_key_id, lifetime)
    db().commit()
    session.clear()  # a fresh session (and CSRF token) on every sign-in: no fixation
    session.permanent = True
    session[SESSION_TOKEN] = token


def login_with_key(api_key: str) -> bool:
    """Sign the browser in with a team API key; the session is bound to that key."""
    caller = caller_for_key(db(), api_key.strip())
    if caller is None:
        return False
    _start_session(caller.api_key_id)
    return True


def login_with_link(token: str) -> bool:
    """Spend a one-time login link; the session is bound to the key the link was made for."""
    key_id = use_login_link(db(), token)
    if key_id is None:
        db().rollback()
        return False
    _start_session(key_id)
    return True


def logout() -> None:
    """End the session everywhere, not only in this browser."""
    token = session.get(SESSION_TOKEN)
    if token:
        end_session(db(), token)
        db().commit()
    session.clear()


def team_run(run_id: str) -> Run:
    """The calling team's run; another team's run, like a missing one, is a 404."""
    try:
        rid = uuid.UUID(run_id)
    except ValueError:
        raise ApiError(404, "not_found", "no such run") from None
    run = get_run(db(), g.team_id, rid)
    if run is None:
        raise ApiError(404, "not_found", "no such run")
    return run
