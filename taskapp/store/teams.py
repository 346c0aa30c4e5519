"""Teams and who may act for them: API keys, browser sessions bound to a key, one-time login links.

Everything is checked against PostgreSQL on every request, never remembered in a
web process, so revoking a key or signing out takes effect on every process at once.
Only SHA-256 digests of keys and tokens are stored; the clear values are shown once.
Functions flush; the caller commits.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, select, update
from sqlalchemy.orm import Session

from taskapp.store.models import ApiKey, LoginLink, Team, WebSession

KEY_PREFIX = "tk_"
KEY_SHOWN = 10  # how much of a key is stored in clear, to tell keys apart


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_team(session: Session, name: str) -> tuple[Team, str]:
    """A new team and its first API key (the only time the key is seen in clear)."""
    team = Team(name=name)
    session.add(team)
    session.flush()
    return team, issue_api_key(session, team)


def issue_api_key(session: Session, team: Team) -> str:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(team_id=team.id, key_hash=hash_key(key), prefix=key[:KEY_SHOWN]))
    session.flush()
    return key


def team_for_key(session: Session, api_key: str) -> Team | None:
    """The team an active key belongs to (None for an unknown or revoked key)."""
    row = _active_key(session, api_key)
    return row[0] if row else None


def team_by_name(session: Session, name: str) -> Team | None:
    return session.scalar(select(Team).where(Team.name == name))


class NoActiveKey(LookupError):
    """The team has no API key that is not revoked, so nothing can be bound to one."""


@dataclass(frozen=True)
class Caller:
    """The team a request acts for, and the key it was authenticated with."""

    team_id: uuid.UUID
    team_name: str
    is_operator: bool
    api_key_id: uuid.UUID
    session_id: uuid.UUID | None = None  # the browser session, when it came with one


def _caller(team: Team, key: ApiKey, web_session: WebSession | None = None) -> Caller:
    return Caller(team.id, team.name, team.is_operator, key.id, web_session.id if web_session else None)


def caller_for_key(session: Session, api_key: str) -> Caller | None:
    """The caller an API key stands for, if the key exists and is not revoked."""
    row = _active_key(session, api_key)
    return _caller(*row) if row else None


def _active_key(session: Session, api_key: str) -> tuple[Team, ApiKey] | None:
    if not api_key or not api_key.startswith(KEY_PREFIX):
        return None
    row = session.execute(
        select(Team, ApiKey).join(ApiKey).where(ApiKey.key_hash == hash_key(api_key), ApiKey.revoked_at.is_(None))
    ).first()
    return (row[0], row[1]) if row else None


def open_session(session: Session, api_key_id: uuid.UUID, lifetime: timedelta) -> str:
    """A new browser session bound to this key; returns the token the cookie will carry."""
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=hash_key(token), api_key_id=api_key_id, expires_at=datetime.now(UTC) + lifetime))
    session.flush()
    return token


def caller_for_session(session: Session, token: str) -> Caller | None:
    """The caller of a live session: not signed out, not expired, its key not revoked."""
    row = session.execute(
        select(Team, ApiKey, WebSession)
        .join(ApiKey, ApiKey.team_id == Team.id)
        .join(WebSession, WebSession.api_key_id == ApiKey.id)
        .where(
            WebSession.token_hash == hash_key(token),
            WebSession.ended_at.is_(None),
            WebSession.expires_at > datetime.now(UTC),
            ApiKey.revoked_at.is_(None),
        )
    ).first()
    return _caller(*row) if row else None


def still_valid(conn: Connection | Session, caller: Caller) -> bool:
    """Whether the caller's key (and browser session) still stand: for work that outlives a
    request, such as an event stream, to stop when either is revoked or ended."""
    query = select(ApiKey.id).where(ApiKey.id == caller.api_key_id, ApiKey.revoked_at.is_(None))
    if caller.session_id is not None:
        query = query.join(WebSession, WebSession.api_key_id == ApiKey.id).where(
            WebSession.id == caller.session_id, WebSession.ended_at.is_(None), WebSession.expires_at > datetime.now(UTC)
        )
    return conn.execute(query).first() is not None


def end_session(session: Session, token: str) -> None:
    """Sign out: the session stops working on every web process."""
    session.execute(
        update(WebSession)
        .where(WebSession.token_hash == hash_key(token), WebSession.ended_at.is_(None))
        .values(ended_at=datetime.now(UTC))
    )


def make_login_link(session: Session, team: Team, lifetime: timedelta) -> str:
    """A one-time sign-in token bound to the team's newest active key.

    Raises:
        NoActiveKey: the team has no key to bind the session to.
    """
    key_id = session.scalar(
        select(ApiKey.id)
        .where(ApiKey.team_id == team.id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at.desc())
        .limit(1)
    )
    if key_id is None:
        raise NoActiveKey(f"team {team.name!r} has no active API key")
    token = secrets.token_urlsafe(32)
    session.add(LoginLink(token_hash=hash_key(token), api_key_id=key_id, expires_at=datetime.now(UTC) + lifetime))
    session.flush()
    return token


def login_url(base_url: str, token: str) -> str:
    """Where a login link points: the token rides in the fragment, which no server or log sees."""
    return f"{base_url.rstrip('/')}/login#link={token}"


def use_login_link(session: Session, token: str) -> uuid.UUID | None:
    """Spend a login link (at most once, before it expires); the key id it was bound to."""
    key_id = session.scalar(
        update(LoginLink)
        .where(
            LoginLink.token_hash == hash_key(token),
            LoginLink.used_at.is_(None),
            LoginLink.expires_at > datetime.now(UTC),
        )
        .values(used_at=datetime.now(UTC))
        .returning(LoginLink.api_key_id)
    )
    if key_id is None:
        return None
    active = session.scalar(select(ApiKey.id).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))
    return active


def revoke_key(session: Session, team: Team, prefix: str) -> int:
    """Revoke the team's key with this prefix (as `teams keys` lists it); how many were revoked."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.team_id == team.id, ApiKey.prefix == prefix[:KEY_SHOWN], ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return cast(CursorResult[Any], result).rowcount or 0  # an UPDATE's result has a row count


def list_keys(session: Session, team: Team) -> list[ApiKey]:
    """The team's keys, newest first (prefixes only: the keys themselves are never stored)."""
    return list(session.scalars(select(ApiKey).where(ApiKey.team_id == team.id).order_by(ApiKey.created_at.desc())))
