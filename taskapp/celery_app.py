"""The Celery application (`celery -A taskapp.celery_app worker`)."""

from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging, worker_process_init

from taskapp.db import dispose_engines
from taskapp.logs import configure_logging
from taskapp.settings import get_settings

app = Celery("taskapp", include=["taskapp.tasks"])
app.config_from_object("celeryconfig")


@setup_logging.connect
def _configure_logging(**_: object) -> None:
    configure_logging(get_settings())


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    dispose_engines()
