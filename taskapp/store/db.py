"""Engine and sessions. One engine per process, built lazily so forked workers get their own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from taskapp.per_process import per_process
from taskapp.settings import Settings, get_settings


def get_engine(settings: Settings | None = None, pool_size: int | None = None) -> Engine:
    """The engine for this process (a forked child never reuses its parent's sockets)."""
    settings = settings or get_settings()
    return _engine(settings.require("database_url"), pool_size or settings.db_pool_size, settings.db_pre_ping)


@per_process
def _engine(url: str, size: int, pre_ping: bool) -> Engine:
    return create_engine(
        url,
        pool_size=size,
        max_overflow=size // 2,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        # A failed statement's error (logged with the traceback of a 500) names the
        # statement, never its parameters: they carry team ids and run inputs.
        hide_parameters=True,
    )


def session_factory(settings: Settings | None = None, pool_size: int | None = None) -> sessionmaker[Session]:
    """Sessions that know where to publish their events once they commit."""
    settings = settings or get_settings()
    return sessionmaker(get_engine(settings, pool_size), expire_on_commit=False, info={"redis_url": settings.redis_url})


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on error."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Drop pooled connections (after fork, or at shutdown)."""
    for engine in _engine.made():
        engine.dispose(close=False)
    _engine.forget()
