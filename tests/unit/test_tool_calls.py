"""Tool calls without services: what a failure leads to (taskapp.domain.tool_calls), calling within a
time limit (taskapp.pipeline.time_limits), and the per-message limits the publisher sets."""

from __future__ import annotations

import threading
import time

import pytest

from taskapp.domain import tool_calls
from taskapp.domain.agents import ToolSpec
from taskapp.pipeline.time_limits import TimedOut, call_within
from taskapp.pipeline.tool_publish import time_limits

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}


def spec(**changes) -> ToolSpec:
    return ToolSpec(**{"name": "t", "description": "d", "args_schema": SCHEMA, "timeout_s": 2.0, **changes})


def test_a_result_is_stored_under_result_as_json_holds_it():
    value, failure = tool_calls.as_result({"a": (1, 2)})
    assert failure is None and tool_calls.succeeded(value).output == {"result": {"a": [1, 2]}}


@pytest.mark.parametrize("value", [{1, 2}, float("nan"), object(), "x" * (tool_calls.MAX_RESULT_CHARS + 1)])
def test_a_result_json_cannot_hold_or_too_long_is_a_failure(value):
    _, failure = tool_calls.as_result(value)
    assert failure is not None and failure.kind == tool_calls.NOT_JSON


def test_arguments_are_checked_against_the_schema_with_paths():
    assert tool_calls.argument_failure(spec(), {"n": 3}) is None
    assert str(tool_calls.argument_failure(spec(), {"n": 0})) == "bad_arguments: n: 0 is less than the minimum of 1"
    assert str(tool_calls.argument_failure(spec(), [1])) == "bad_arguments: the arguments must be an object"


def test_a_failure_is_retried_while_retries_remain_then_fed_back_or_failed():
    boom = tool_calls.raised(ValueError("x"))
    assert tool_calls.after_failure(spec(retries=2), 1, boom).action == "retry"
    assert tool_calls.after_failure(spec(retries=2), 2, boom).action == "retry"
    fed = tool_calls.after_failure(spec(retries=2), 3, boom)
    assert (fed.action, fed.output) == ("succeed", {"error": "raised: ValueError: x"})
    failed = tool_calls.after_failure(spec(on_error="fail"), 1, tool_calls.timed_out(spec()))
    assert (failed.action, failed.output, failed.error) == ("fail", None, "timeout: t did not finish within 2s")


@pytest.mark.parametrize("kind", [tool_calls.BAD_ARGUMENTS, tool_calls.NOT_JSON, tool_calls.UNAVAILABLE])
def test_failures_another_attempt_cannot_cure_are_final_at_once(kind):
    verdict = tool_calls.after_failure(spec(retries=5), 1, tool_calls.Failure(kind, "m"))
    assert verdict.action == "succeed" and verdict.output == {"error": f"{kind}: m"}


def test_the_retry_delay_grows_with_the_attempt_and_stays_capped():
    boom = tool_calls.raised(ValueError("x"))
    delays = [tool_calls.after_failure(spec(retries=10), a, boom).retry_in_s for a in range(1, 11)]
    assert all(1.0 <= d <= 60.0 for d in delays) and max(delays) > 2.0


def test_call_within_interrupts_a_sleeping_call_even_one_that_catches_exceptions():
    def careless() -> str:
        try:
            time.sleep(10)
        except Exception:  # noqa: BLE001
            return "swallowed"
        return "slept"

    started = time.monotonic()
    with pytest.raises(TimedOut):
        call_within(careless, {}, 0.3)
    assert time.monotonic() - started < 1.5
    assert call_within(lambda x: x * 2, {"x": 4}, 1) == 8
    with pytest.raises(KeyError):
        call_within(lambda: {}["missing"], {}, 1)
    time.sleep(0.4)  # the timer is disarmed: nothing fires later


def test_call_within_off_the_main_thread_waits_in_a_thread_of_its_own():
    seen: dict[str, object] = {}

    def in_a_thread() -> None:
        try:
            call_within(lambda: time.sleep(5), {}, 0.2)
        except TimedOut:
            seen["timed_out"] = True
        seen["value"] = call_within(lambda: 7, {}, 1)

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join(3)
    assert seen == {"timed_out": True, "value": 7}


def test_the_message_limits_leave_the_tool_its_timeout_and_the_task_its_commit():
    soft, hard = time_limits(5.0)
    assert 5.0 < soft < hard and hard - 5.0 >= 20
    assert time_limits(3600)[1] > 300  # lifts the deployment's default hard limit for a long tool
