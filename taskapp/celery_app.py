"""The Celery application (`celery -A taskapp.celery_app worker`)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

from celery import Celery, bootsteps
from celery.signals import setup_logging, worker_init, worker_process_init, worker_shutting_down

from taskapp.child_processes import die_with_parent
from taskapp.logs import configure_logging
from taskapp.pool_signals import finish_task_on_foreign_sigterm
from taskapp.settings import child_environment, get_settings
from taskapp.store.db import dispose_engines

log = logging.getLogger(__name__)

app = Celery("taskapp", include=["taskapp.tasks"])
app.config_from_object("celeryconfig")


@setup_logging.connect
def _configure_logging(**_: object) -> None:
    configure_logging(get_settings())


@worker_init.connect
def _warm_up_before_fork(**_: object) -> None:
    """Import and build, once in the node's main process, what every pool process needs."""
    import celery.app.events  # a process's first task message imports these, for its event
    import celery.events.dispatcher  # noqa: F401
    import psycopg  # noqa: F401 (the engine imports the driver on its first connect)
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

    from taskapp.catalog.files import DefinitionFileError
    from taskapp.catalog.shared import shared_definitions
    from taskapp.domain.prompts import batch_schema
    from taskapp.llm import gemini

    # A bad file in WORKFLOWS_PATH stops the node here, naming the file, the path and the reason.
    # (SystemExit, not the error itself: Celery logs and ignores an Exception a signal handler raises.)
    try:
        definitions = shared_definitions(get_settings())
    except DefinitionFileError as exc:
        log.critical("%s", exc)
        raise SystemExit(f"taskapp worker: WORKFLOWS_PATH: {exc}") from None
    gemini.warm_up(batch_schema(agent) for d in definitions for agent in d.agents.values())
    _store_shared_workflows()


def _store_shared_workflows() -> None:
    """Store what changed in WORKFLOWS_PATH (the release step does too; this covers a deploy without one)."""
    from taskapp.catalog.shared import sync
    from taskapp.store.db import session_factory

    try:
        sync(get_settings(), session_factory())
    except Exception as exc:  # noqa: BLE001 (the release step or another process stores them)
        log.warning("could not store the shared workflows now: %s", str(exc).splitlines()[0][:200])


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    dispose_engines()


@worker_process_init.connect
def _keep_task_through_group_sigterm(**_: object) -> None:
    """A SIGTERM to the whole process group (Heroku, `kill -TERM -<pgid>`) is a warm shutdown."""
    finish_task_on_foreign_sigterm(os.getppid())


class EmbeddedFlusher(bootsteps.StartStopStep):
    """Runs `python -m taskapp.pipeline.flusher` beside this worker node, restarting it if it exits.

    So a Procfile `worker` dyno brings its own flusher and sweeper, and a fleet has as
    many as it has orchestration nodes (their work is atomic, so more is only redundancy).
    An `llm` node (taskapp.worker_roles) runs none: flushing and sweeping are orchestration
    work, and a fleet of llm nodes, scaled on RPM x call latency, would multiply the
    flushers' polls of Redis (each ticks every BATCH_TICK_MS) for nothing.
    BATCH_FLUSHER_EMBEDDED=false leaves it to a separate `taskapp flusher` process.
    """

    def __init__(self, parent: object, **kwargs: object) -> None:
        super().__init__(parent, **kwargs)
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()

    def start(self, parent: object) -> None:
        if not get_settings().batch_flusher_embedded or not _orchestrates(parent):
            return
        # From the node's first shutdown signal on, a flusher that exits stays down: a
        # SIGTERM to the process group stops it while this node still finishes its tasks.
        worker_shutting_down.connect(self._on_shutting_down, weak=False)
        threading.Thread(target=self._supervise, name="flusher-supervisor", daemon=True).start()

    def _on_shutting_down(self, **_: object) -> None:
        self.stopping.set()

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "taskapp.pipeline.flusher"], env=child_environment(), preexec_fn=die_with_parent
            )
            code = self.proc.wait()
            # Wait before deciding: a group SIGTERM may reach the flusher before this node.
            if self.stopping.wait(1):
                break
            (log.warning if code == 0 else log.error)("flusher exited with %s; restarting it", code)

    def stop(self, parent: object) -> None:
        self.stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def _orchestrates(worker: object) -> bool:
    """Whether this node consumes the orchestration queue (every node does unless -Q says otherwise)."""
    from taskapp.keys import ORCHESTRATION_QUEUE

    return ORCHESTRATION_QUEUE in worker.app.amqp.queues.consume_from  # type: ignore[attr-defined]


app.steps["worker"].add(EmbeddedFlusher)


def queue_depths(queues: list[str] | None = None) -> dict[str, int | None]:
    """Messages waiting per queue, for Redis and AMQP brokers alike (None: broker down)."""
    from amqp.exceptions import ChannelError

    from taskapp.keys import all_queues

    names = queues or all_queues(get_settings().gemini_models)
    out: dict[str, int | None] = {}
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            for name in names:
                channel = conn.channel()  # AMQP closes a channel on a 404: one each
                try:
                    out[name] = channel.queue_declare(queue=name, passive=True).message_count
                except ChannelError:
                    out[name] = 0  # not declared by any consumer yet: nothing waits in it
                finally:
                    channel.close()
    except Exception:  # noqa: BLE001 (kombu/amqp raise many kinds; all mean "unknown now")
        return {q: None for q in names}
    return out
