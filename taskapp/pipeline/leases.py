"""Claim leases kept alive while a batch's calls run."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from taskapp.store.models import Step

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the claim's lease while the calls are in flight, so the lease can be short.

    A worker that dies (SIGKILL, OOM, a lost machine) stops renewing, and the sweeper
    offers its steps again once the lease runs out: seconds, not the task's hard time
    limit. Renewal is conditional on the claim (status and attempt), like the commit.
    """

    def __init__(self, factory: sessionmaker[Session], steps: list[Step], lease_s: float) -> None:
        self.factory, self.steps, self.lease_s = factory, steps, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with self.factory.begin() as session:
                    for step in self.steps:
                        session.execute(
                            update(Step)
                            .where(Step.id == step.id, Step.status == "running", Step.attempts == step.attempts)
                            .values(lease_until=datetime.now(UTC) + timedelta(seconds=self.lease_s))
                        )
            except Exception as exc:  # noqa: BLE001 (a missed renewal only risks a duplicate claim, never a loss)
                log.warning("lease renewal failed: %s", exc)
