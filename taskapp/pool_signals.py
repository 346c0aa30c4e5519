"""A prefork pool process keeps its task through a SIGTERM meant for the whole node.

Heroku stops a dyno, and `kill -TERM -<pgid>` stops a process group, by sending SIGTERM
to every process at once. Celery's main process takes it as a warm shutdown (it stops
consuming, waits for the tasks in hand, then ends its pool), but by default each pool
process dies at once, mid-call: the answer Gemini is sending (and billing) is lost and
the steps are called again.

So a pool process tells SIGTERMs apart by their sender. One from its own main process
is billiard ending it (a cold shutdown, a cancelled or timed-out task, the pool
replacing it): it exits at once, as before. One from anyone else is not its to act
on: sent to the group, it reached the main process too, which is shutting down warm,
so the task in hand finishes and commits and the main process ends the pool after it.
SIGQUIT and SIGKILL still end a pool process at once. A thread reads each SIGTERM with
its sender (sigwaitinfo); the signal is blocked everywhere else, so it never
interrupts the task.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)


def finish_task_on_foreign_sigterm(main_pid: int) -> None:
    """In a pool process, at its start (before it runs a task or starts a thread)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started from now on inherit it
    threading.Thread(
        target=_read_sigterms, args=(main_pid, threading.main_thread().ident), name="sigterm-reader", daemon=True
    ).start()


def _read_sigterms(main_pid: int, task_thread: int) -> None:
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid == main_pid:
            # Billiard's own way out (its terminate-signal handler raises SystemExit in the
            # task's thread); SIGQUIT is not blocked there and is handled the same way.
            signal.pthread_kill(task_thread, signal.SIGQUIT)
            return
        log.info(
            "SIGTERM from pid %d: pool process %d carries on with its task; its node ends it when it is done",
            info.si_pid,
            os.getpid(),
        )
