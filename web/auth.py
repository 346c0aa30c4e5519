"""Who is calling: a bearer API key (API clients) or a signed session cookie (the browser UI).

Each key belongs to a team; a team sees only its own runs. The cookie is accepted
for reads only, so a cross-site form cannot submit or cancel runs with it.
"""

from __future__ import annotations

import functools
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import g, request, session

from taskapp import store
from taskapp.models import Run
from web.context import db
from web.errors import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
KEY_CACHE_TTL_S = 30.0  # a revoked key stops working within this long
_key_cache: dict[str, tuple[float, uuid.UUID]] = {}


def _team_for_key(api_key: str) -> uuid.UUID | None:
    """Key -> team id, remembered briefly: the enqueue path then costs no lookup query."""
    digest = store.hash_key(api_key)
    hit = _key_cache.get(digest)
    now = time.monotonic()
    if hit and hit[0] > now:
        return hit[1]
    team = store.team_for_key(db(), api_key)
    if team is None:
        return None
    if len(_key_cache) > 10_000:
        _key_cache.clear()
    _key_cache[digest] = (now + KEY_CACHE_TTL_S, team.id)
    return team.id


def team_id_from_request() -> uuid.UUID | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "unauthorized", "use 'Authorization: Bearer <api key>'")
        team_id = _team_for_key(key.strip())
        if team_id is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key")
        return team_id
    if "team_id" in session and (request.method in SAFE_METHODS or _csrf_ok()):
        return uuid.UUID(session["team_id"])
    return None


def require_team(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        team_id = team_id_from_request()
        if team_id is None:
            raise ApiError(401, "unauthorized", "an API key is required",
                           headers={"WWW-Authenticate": 'Bearer realm="taskapp"'})
        g.team_id = team_id
        return view(*args, **kwargs)

    return wrapper


def login(api_key: str) -> bool:
    team = store.team_for_key(db(), api_key.strip())
    if team is None:
        return False
    session.clear()
    session["team_id"] = str(team.id)
    session["team_name"] = team.name
    session["csrf"] = secrets.token_urlsafe(24)
    return True


def csrf_token() -> str:
    return session.get("csrf", "")


def _csrf_ok() -> bool:
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    return bool(sent) and secrets.compare_digest(sent, session.get("csrf", ""))


def team_run(run_id: str) -> Run:
    """The calling team's run; another team's run, like a missing one, is a 404."""
    try:
        rid = uuid.UUID(run_id)
    except ValueError:
        raise ApiError(404, "not_found", "no such run") from None
    run = store.get_run(db(), g.team_id, rid)
    if run is None:
        raise ApiError(404, "not_found", "no such run")
    return run
