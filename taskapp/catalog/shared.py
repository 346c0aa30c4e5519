"""The deployer's shared workflows at a process's start: loaded, checked, stored as versions.

Web and worker processes both load WORKFLOWS_PATH at start and refuse to start on a bad
file (the message names the file, the path inside it and the reason); the release step
(`taskapp db upgrade`) and each process then store what changed as new shared versions.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from taskapp.catalog.files import load_path
from taskapp.domain.definitions.checks import Definition
from taskapp.settings import Settings
from taskapp.store.workflows import sync_shared

log = logging.getLogger(__name__)
_loaded: dict[str, list[Definition]] = {}


def shared_definitions(settings: Settings) -> list[Definition]:
    """The checked definitions of WORKFLOWS_PATH (none when unset), read once per process."""
    if not settings.workflows_path:
        return []
    key = f"{settings.workflows_path}|{','.join(settings.gemini_models)}"
    if key not in _loaded:
        _loaded[key] = load_path(settings.workflows_path, models=settings.gemini_models)
    return _loaded[key]


def sync(settings: Settings, factory: sessionmaker[Session]) -> list[tuple[str, int, bool]]:
    """Store the shared definitions that changed as new versions; returns (name, version, new)."""
    definitions = shared_definitions(settings)
    if not definitions:
        return []
    with factory.begin() as session:
        done = sync_shared(session, definitions)
    for name, version, created in done:
        if created:
            log.info("shared workflow %s: version %d stored", name, version)
    return done


def release(settings: Settings) -> list[tuple[str, int, bool]]:
    """The release step (`taskapp db upgrade`): migrate the database, then store the shared workflows."""
    from taskapp.store import migrate
    from taskapp.store.db import session_factory

    migrate.upgrade(settings)
    return sync(settings, session_factory(settings))
