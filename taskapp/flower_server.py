"""Flower for operators, with its Prometheus `/metrics` behind the same basic auth as its pages.

Flower serves `/metrics` (task names, worker names, counts) without asking for
credentials even when `--basic-auth` is set; this swaps in a subclass of its handler
that requires them, then runs Flower in this process.
"""

from __future__ import annotations

import tornado.web
from flower import urls
from flower.views.monitor import Metrics

from taskapp.celery_app import app


class AuthenticatedMetrics(Metrics):
    """Flower's metrics handler, answering 401 without the basic-auth credentials."""

    @tornado.web.authenticated
    async def get(self) -> None:
        await super().get()


def protect_metrics() -> None:
    """Point Flower's `/metrics` route at the authenticated handler (before Flower builds its app).

    Raises:
        RuntimeError: this Flower lays out its routes differently: refuse to serve them open.
    """
    routes = [
        (h[0], AuthenticatedMetrics, *h[2:]) if isinstance(h, tuple) and h[1] is Metrics else h for h in urls.handlers
    ]
    if routes == urls.handlers:
        raise RuntimeError(
            "Flower's /metrics route was not found, so it cannot be protected; "
            "check the flower version pinned in pyproject.toml"
        )
    urls.handlers[:] = routes


def serve(options: list[str]) -> int:
    """Run `celery flower` with these options (credentials included) in this process."""
    protect_metrics()
    return app.start(["flower", *options]) or 0
