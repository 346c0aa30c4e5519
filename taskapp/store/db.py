"""Engine and sessions. One engine per process, built lazily so forked workers get their own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from taskapp.settings import Settings, get_settings

_engines: dict[tuple[int, str, int], Engine] = {}


def get_engine(settings: Settings | None = None, pool_size: int | None = None) -> Engine:
    """The engine for this process (a forked child never reuses its parent's sockets)."""
    settings = settings or get_settings()
    url = settings.require("database_url")
    size = pool_size or settings.db_pool_size
    key = (os.getpid(), url, size)
    engine = _engines.get(key)
    if engine is None:
        engine = create_engine(
            url,
            pool_size=size,
            max_overflow=size // 2,
            pool_pre_ping=settings.db_pre_ping,
            pool_recycle=1800,
            # A failed statement's error (logged with the traceback of a 500) names the
            # statement, never its parameters: they carry team ids and run inputs.
            hide_parameters=True,
        )
        _engines[key] = engine
    return engine


def session_factory(settings: Settings | None = None, pool_size: int | None = None) -> sessionmaker[Session]:
    """Sessions that know where to publish their events once they commit."""
    settings = settings or get_settings()
    return sessionmaker(get_engine(settings, pool_size), expire_on_commit=False,
                        info={"redis_url": settings.redis_url})


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
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
