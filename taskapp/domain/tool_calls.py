"""What becomes of a tool call: its output, or after a failure a retry, an error fed back, or a failed step.

Pure: the tool's policy (its ToolSpec as the run's definition snapshotted it), the attempt
number and what happened decide it. A failure is retried while the tool's `retries` allow
another attempt and the failure is one that another attempt could change (a raise, a
timeout, a lost worker); bad arguments and a result JSON cannot hold never change, so they
are final at once. A final failure is fed back to the agent (`{"error": "<kind>: ..."}`,
the step succeeds) or fails the step, per the tool's `on_error`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from taskapp.domain.agents import ToolSpec
from taskapp.domain.definitions.schemas import validation_errors
from taskapp.domain.retry import backoff_s

# A result longer than this (as JSON) would crowd the agent's next prompt: an error instead.
MAX_RESULT_CHARS = 32_000
MAX_ERROR_CHARS = 2_000

# Failures another attempt may cure.
RAISED, TIMEOUT, WORKER_LOST = "raised", "timeout", "worker_lost"
# Failures that stay what they are however often the tool runs.
BAD_ARGUMENTS, NOT_JSON, UNAVAILABLE = "bad_arguments", "not_json", "unavailable"
RETRYABLE = frozenset({RAISED, TIMEOUT, WORKER_LOST})


@dataclass(frozen=True)
class Failure:
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"[:MAX_ERROR_CHARS]


@dataclass(frozen=True)
class Verdict:
    """What to commit for a tool step (or that it runs again after `retry_in_s`)."""

    action: Literal["succeed", "retry", "fail"]
    output: dict[str, Any] | None = None
    error: str | None = None
    retry_in_s: float = 0.0


def argument_failure(spec: ToolSpec, arguments: Any) -> Failure | None:
    """Why the model's arguments do not fit the tool's args_schema (None: they do)."""
    if not isinstance(arguments, dict):
        return Failure(BAD_ARGUMENTS, "the arguments must be an object")
    problems = validation_errors(spec.args_schema, arguments, limit=5)
    if not problems:
        return None
    return Failure(BAD_ARGUMENTS, "; ".join(f"{path or '(arguments)'}: {message}" for path, message in problems))


def as_result(value: Any) -> tuple[Any, Failure | None]:
    """The tool's return value as JSON would store it (tuples become lists), or why it cannot be."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        return None, Failure(NOT_JSON, f"the tool returned a {type(value).__name__}, which JSON cannot hold ({exc})")
    if len(text) > MAX_RESULT_CHARS:
        return None, Failure(NOT_JSON, f"the result is {len(text):,} characters as JSON; at most {MAX_RESULT_CHARS:,}")
    return json.loads(text), None


def raised(exc: BaseException) -> Failure:
    text = str(exc).strip()
    return Failure(RAISED, f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def timed_out(spec: ToolSpec) -> Failure:
    return Failure(TIMEOUT, f"{spec.name} did not finish within {spec.timeout_s:g}s")


def succeeded(result: Any) -> Verdict:
    return Verdict("succeed", output={"result": result})


def after_failure(spec: ToolSpec, attempt: int, failure: Failure, *, retry_delay_s: float | None = None) -> Verdict:
    """After attempt number `attempt` (1-based) failed: run it again, feed the error back, or fail."""
    if failure.kind in RETRYABLE and attempt < attempts_allowed(spec):
        delay = backoff_s(attempt - 1) if retry_delay_s is None else retry_delay_s
        return Verdict("retry", error=str(failure), retry_in_s=delay)
    return final(spec, failure)


def final(spec: ToolSpec, failure: Failure) -> Verdict:
    if spec.on_error == "fail":
        return Verdict("fail", error=str(failure))
    return Verdict("succeed", output={"error": str(failure)})


def attempts_allowed(spec: ToolSpec) -> int:
    """How many times the tool may run for one step: once, and once per retry."""
    return 1 + max(0, spec.retries)


def worker_lost(spec: ToolSpec, attempts: int) -> Failure:
    """A step whose every allowed attempt started and none finished: the last one's worker died
    (killed, out of memory, or past the hard time limit) before it could record anything."""
    return Failure(
        WORKER_LOST,
        f"{spec.name} started {attempts} time(s) and never finished (its worker died or passed the "
        f"hard time limit); not run again",
    )
