"""Tools for the tool-runner tests: each writes a line to the file named by its `log` argument when
it starts, so a test counts how often it really ran, whichever process ran it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from taskapp.tools import tool

LOG = {"type": "string", "description": "a file each call appends a line to"}


def _called(log: str) -> int:
    """Note this call; how many calls (this one included) the log holds."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
    return len(Path(log).read_text(encoding="utf-8").splitlines())


def _args(**properties: dict) -> dict:
    return {"type": "object", "properties": {"log": LOG, **properties}, "required": ["log", *properties]}


@tool(args_schema=_args(value={"type": "integer", "minimum": 1}), timeout_s=5)
def t_echo(log: str, value: int) -> dict:
    """Echo the value back, with the number of calls so far."""
    return {"echo": value, "calls": _called(log)}


@tool(args_schema=_args(), timeout_s=5, on_error="feed_back")
def t_boom(log: str) -> dict:
    """Always raises: its error goes back to the agent."""
    _called(log)
    raise ValueError("the tool broke")


@tool(args_schema=_args(), timeout_s=5, on_error="fail")
def t_boom_fail(log: str) -> dict:
    """Always raises: its step fails."""
    _called(log)
    raise RuntimeError("the tool broke for good")


@tool(args_schema=_args(seconds={"type": "number"}), timeout_s=1, on_error="feed_back")
def t_slow(log: str, seconds: float) -> dict:
    """Sleeps past its one-second timeout (and swallows ordinary exceptions, as careless tools do)."""
    _called(log)
    try:
        time.sleep(seconds)
    except Exception:  # noqa: BLE001 (on purpose: a timeout must still get through)
        return {"slept": "interrupted"}
    return {"slept": seconds}


@tool(args_schema=_args(), timeout_s=5, retries=1, on_error="fail")
def t_flaky(log: str) -> dict:
    """Fails its first call, succeeds on the next."""
    if _called(log) == 1:
        raise ConnectionError("first call fails")
    return {"ok": True}


@tool(args_schema=_args(), timeout_s=5, retries=0, on_error="feed_back")
def t_die(log: str) -> dict:
    """Kills its own process (a worker lost mid-call: OOM, SIGKILL)."""
    _called(log)
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


@tool(args_schema=_args(), timeout_s=5, on_error="feed_back")
def t_not_json(log: str) -> object:
    """Returns something JSON cannot hold."""
    _called(log)
    return {1, 2, 3}
