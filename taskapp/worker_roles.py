"""Worker roles: which queues a worker node consumes, and on which Celery pool.

Orchestration (deciding steps, batching, committing chords) and tool calls are short CPU work: a prefork
pool of `WORKER_CONCURRENCY` processes, one per core. A Gemini call is seconds of waiting:
on prefork each waiting call holds a whole process, so the `llm.*` queues get a node of
their own on a pool made for waiting (`LLM_WORKER_POOL`, threads by default), with
`LLM_WORKER_CONCURRENCY` calls in flight in one process. The two are separate process
types (the Procfile's `worker` and `llm`) because they scale on different numbers:
orchestration on steps per second, LLM nodes on RPM x call latency (Little's law,
docs/operations.md). Role `all` is the single-node layout of before (every queue, prefork).

The Procfile line is `taskapp worker <role>`, which replaces itself with `celery worker`
(same pid, so a platform's SIGTERM reaches Celery directly).
"""

from __future__ import annotations

import sys
from typing import Literal

from taskapp.keys import ORCHESTRATION_QUEUE, TOOLS_QUEUE, llm_queue
from taskapp.settings import Settings

Role = Literal["orchestration", "llm", "all"]
ROLES: tuple[Role, ...] = ("orchestration", "llm", "all")
CELERY_APP = "taskapp.celery_app"


def role_queues(role: Role, settings: Settings) -> list[str] | None:
    """The queues a node of this role consumes (None: every queue the app declares).

    Tool calls (the `tools` queue) run beside orchestration, on prefork: each call's time
    limit is a signal in its own process (taskapp.pipeline.tool_runner), and a tool that
    hangs in C code is ended by the message's hard limit, which only prefork enforces."""
    if role == "orchestration":
        return [ORCHESTRATION_QUEUE, TOOLS_QUEUE]
    if role == "llm":
        return [llm_queue(m) for m in settings.gemini_models]
    return None


def role_options(role: Role, settings: Settings) -> list[str]:
    """`celery worker` options for the role: its queues, and for `llm` its pool and concurrency.

    Options given after these on the command line win (Celery reads the last one), so an
    operator can still pass `-c 50` or `-Q llm.gemini-2.5-pro` by hand.
    """
    options: list[str] = []
    queues = role_queues(role, settings)
    if queues is not None:
        options += ["-Q", ",".join(queues)]
    if role == "llm":
        # -P on the command line, not worker_pool in the config: only the command line makes
        # Celery monkey-patch for gevent before anything else is imported.
        options += ["-P", settings.llm_worker_pool, "-c", str(settings.llm_worker_concurrency)]
    return options


def worker_argv(role: Role, settings: Settings, extra: list[str]) -> list[str]:
    """The whole `celery worker` command line for a node of this role (node name `<role>@<host>`)."""
    argv = [sys.executable, "-m", "celery", "-A", CELERY_APP, "worker", *role_options(role, settings)]
    if not any(arg == "-n" or arg.startswith(("--hostname", "-n")) for arg in extra):
        # Two roles on one host (`make run`) need two names, or their control replies collide.
        argv += ["-n", f"{role}@%h"]
    return argv + extra
