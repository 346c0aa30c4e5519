"""The flusher: flushes buffers whose window has passed or that nothing could still
join, and runs the sweeper.

A full buffer is flushed at once by whoever filled it; a partial one needs someone
to notice that its oldest step has waited its window, or that nothing is on its
way that could join it (the idle flush, taskapp.domain.batching.company_can_come). One
flusher runs beside each worker node (started by the worker, see taskapp.celery_app),
so there is no single process to lose; their takes are atomic, so several flushers
never send a step twice.
It is a process of its own rather than a thread in the worker, so it never shares
the worker's broker connections and never blocks a pool slot: a flush is due
within one tick of the window, however busy the workers are.
"""

from __future__ import annotations

import logging
import signal
import time

import redis

from taskapp.keys import SWEEP_LOCK
from taskapp.outages import TRANSIENT_ERRORS, dependency_of
from taskapp.pipeline import sweeper
from taskapp.pipeline.dispatcher import Dispatcher, get_dispatcher

log = logging.getLogger(__name__)
# What a tick may meet while PostgreSQL or Redis restarts: waited out, never a crash.
OUTAGES: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, redis.RedisError, OSError)
# How often a node asks whether anything could still join its waiting buffers (a few
# indexed reads in Postgres): the idle flush comes at most this late.
IDLE_CHECK_S = 0.1


class Flusher:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.stopping = False
        self._next_sweep = 0.0
        self._next_idle_check = 0.0

    def tick(self) -> None:
        lanes = self.dispatcher.batcher.lanes()  # the buffers with steps waiting, any agent version
        for lane in lanes:
            self.dispatcher.flush(lane)
        if lanes and time.monotonic() >= self._next_idle_check:
            self._next_idle_check = time.monotonic() + IDLE_CHECK_S
            self.dispatcher.flush_idle(lanes)
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.dispatcher.settings.sweep_interval_s
            if self._elected():
                sweeper.sweep(self.dispatcher)

    def _elected(self) -> bool:
        """One sweep per interval across the fleet: the first node to take the lease does it."""
        lease_ms = max(1, int(self.dispatcher.settings.sweep_interval_s * 1000 * 0.9))
        return bool(self.dispatcher.batcher.client.set(SWEEP_LOCK, "1", nx=True, px=lease_ms))

    def run(self) -> None:
        tick_s = self.dispatcher.settings.batch_tick_ms / 1000
        log.info("flusher watching the batch buffers, tick %d ms", self.dispatcher.settings.batch_tick_ms)
        while not self.stopping:
            try:
                self.tick()
            except OUTAGES as exc:
                log.warning(
                    "flusher: %s unavailable (%s); retrying in 1 s",
                    dependency_of(exc) or "a dependency",
                    str(exc).splitlines()[0][:200],
                )
                time.sleep(1)
                continue
            except Exception:
                log.exception("flusher tick failed; retrying in 1 s")
                time.sleep(1)
                continue
            time.sleep(tick_s)


def main() -> None:
    from taskapp.logs import configure_logging
    from taskapp.settings import get_settings

    configure_logging(get_settings())
    flusher = Flusher(get_dispatcher())

    def stop(*_: object) -> None:
        flusher.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    flusher.run()


if __name__ == "__main__":
    main()
