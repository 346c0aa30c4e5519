"""Calling deployer code within a time limit (a tool's timeout_s).

In a prefork pool process (and `--pool solo`) tasks run on the process's main thread: an
interval timer (SIGALRM) interrupts the call itself, wherever it is in Python code, with
`TimedOut`. The timer covers the call alone, never the claim or the commit around it, which
is why it is used rather than Celery's soft time limit (that one counts the whole task and
may land inside a commit). `TimedOut` is a BaseException, so a tool's own `except Exception`
does not swallow it.

Code stuck in C that never returns to the interpreter cannot be interrupted this way; the
task's hard time limit (set per message by taskapp.pipeline.tool_publish) kills the process
then, and the step is taken over once its lease runs out. Off the main thread (a threads or
gevent pool) the call runs in a thread of its own that is waited for `timeout_s`: its timeout
is recorded on time, but the thread runs on until it returns.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


class TimedOut(BaseException):  # a BaseException on purpose: see the module's docstring
    """The call ran past its time limit."""


def call_within(function: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> Any:
    """`function(**kwargs)`, or TimedOut after `timeout_s` seconds."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _on_main_thread(function, kwargs, timeout_s)
    return _in_a_thread(function, kwargs, timeout_s)


def _on_main_thread(function: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> Any:
    armed = [True]

    def _expire(signum: int, frame: object) -> None:
        if armed[0]:  # a signal handled late (after the call returned) interrupts nothing
            raise TimedOut

    previous = signal.signal(signal.SIGALRM, _expire)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            return function(**kwargs)
        finally:
            # A TimedOut raised in here (the timer fired as the call returned) still is one.
            signal.setitimer(signal.ITIMER_REAL, 0)
            armed[0] = False
    finally:
        signal.signal(signal.SIGALRM, previous)


def _in_a_thread(function: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> Any:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function(**kwargs)
        except BaseException as exc:  # noqa: BLE001 (handed to the caller below)
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="tool-call", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimedOut
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
