"""Service URLs as the settings accept them: Heroku's `postgres://` made psycopg 3's, and broker
and Redis URLs checked (with the certificate option Celery insists on for `rediss://`)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def normalize_database_url(url: str) -> str:
    """Accept Heroku's `postgres://` and plain `postgresql://`; use psycopg 3."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a URL: {url!r}")
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return "postgresql+psycopg://" + rest
    raise ValueError(f"unsupported database scheme {scheme!r}: taskapp needs PostgreSQL")


def normalize_redis_url(url: str) -> str:
    """Validate a Redis/AMQP URL; give `rediss://` the cert option Celery insists on."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "amqp", "amqps", "pyamqp", "redis+socket"):
        raise ValueError(f"unsupported scheme {parts.scheme!r} (use redis://, rediss:// or amqp://)")
    if parts.scheme == "rediss":
        query = dict(parse_qsl(parts.query))
        query.setdefault("ssl_cert_reqs", "required")
        parts = parts._replace(query=urlencode(query))
    return urlunsplit(parts)
