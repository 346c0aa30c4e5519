"""Tool calls on a real worker node: the `taskapp.run_tool` task on the tools queue, in a prefork
pool process, within its tool's timeout, retried by Celery, idempotent per step, and its run
taken on to the agent's next call with the result (through the simulator, over HTTP).

A stack of its own (its own database, Redis db, simulator and worker), because its worker
loads the test tools (tests/workflows) where the session's workers load examples/workflows.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from celery import Celery

from taskapp.dev.localstack import LocalStack
from taskapp.pipeline.tool_publish import publish_tool_calls
from taskapp.store.tool_steps import ToolCallMessage
from tests.helpers import (
    ARTIFACTS,
    TOOL_WORKFLOWS,
    WORKER_ENV,
    calls_logged,
    make_team,
    make_tool_step,
    next_db,
    step_events,
    tool_check_definition,
)

WORKER = "tools"


@pytest.fixture(scope="module")
def tool_stack(tmp_path_factory):
    with LocalStack(
        tmp_path_factory.mktemp("tools"),
        admin_database_url=os.environ.get("TASKAPP_TEST_DATABASE_URL"),
        redis_url=next_db(os.environ.get("TASKAPP_TEST_REDIS_URL")),
        log_dir=ARTIFACTS,
    ) as s:
        from taskapp.settings import load_settings
        from taskapp.store import migrate

        settings = load_settings(s.env(WORKFLOWS_PATH=str(TOOL_WORKFLOWS)))
        migrate.upgrade(settings)
        worker = s.start_worker(WORKER, concurrency=2, WORKFLOWS_PATH=str(TOOL_WORKFLOWS), **WORKER_ENV)
        producer = Celery(broker=s.redis_url)
        yield s, settings, producer, worker
        producer.close()
        s.stop(worker)


@pytest.fixture(scope="module")
def factory(tool_stack):
    from taskapp.store.db import session_factory

    return session_factory(tool_stack[1])


@pytest.fixture(scope="module")
def definition(tool_stack):
    return tool_check_definition(tool_stack[1].gemini_models)


@pytest.fixture()
def call(tool_stack, factory, definition, tmp_path):
    """call(tool, **arguments) -> (run id, step id, the tool's call log): the step stored as the
    orchestrator stores it, and its message sent as the dispatcher sends it."""
    _, settings, producer, _ = tool_stack
    team_id, _ = make_team(settings)

    def make(tool: str, arguments=None, times: int = 1, **args):
        log = tmp_path / f"{tool}-{uuid.uuid4().hex[:6]}.log"
        run_id, step_id = make_tool_step(
            factory, team_id, definition, tool, {"log": str(log), **args} if arguments is None else arguments
        )
        message = ToolCallMessage(str(step_id), definition.tools[tool].timeout_s)
        assert publish_tool_calls(producer, [message] * times) == times
        return run_id, step_id, log

    return make


def _wait_step(factory, step_id, timeout_s: float = 30):
    from taskapp.store.models import Step

    deadline = time.monotonic() + timeout_s
    while True:
        with factory() as session:
            step = session.get(Step, step_id)
            if step is not None and step.status in ("succeeded", "failed"):
                return step
        assert time.monotonic() < deadline, f"tool step {step_id} still {step and step.status}"
        time.sleep(0.05)


def _wait_run(factory, run_id, timeout_s: float = 30):
    from sqlalchemy.orm import selectinload

    from taskapp.store.models import Run

    deadline = time.monotonic() + timeout_s
    while True:
        with factory() as session:
            run = session.get(Run, run_id, options=[selectinload(Run.steps)])
            if run is not None and run.status in ("succeeded", "failed", "cancelled"):
                return run
        assert time.monotonic() < deadline, f"run {run_id} still {run and run.status}"
        time.sleep(0.1)


def _events(factory, step_id) -> list[dict]:
    with factory() as session:
        return step_events(session, step_id)


def test_a_tool_result_is_stored_and_the_agent_called_again_with_it(tool_stack, factory, call):
    """The whole round: tool step -> its result -> the run advanced -> the agent's next call
    carries tool_results -> its answer ends the run. The worker logs the call with its ids."""
    run_id, step_id, log = call("t_echo", value=7)

    step = _wait_step(factory, step_id)
    run = _wait_run(factory, run_id)

    assert (step.status, step.attempts, step.output) == ("succeeded", 1, {"result": {"echo": 7, "calls": 1}})
    assert run.status == "succeeded", run.error
    again = [s for s in run.steps if s.kind == "agent" and s.seq > step.seq]
    assert again and again[0].input["tool_results"] == [
        {"tool": "t_echo", "arguments": {"log": str(log), "value": 7}, "result": {"echo": 7, "calls": 1}}
    ]
    text = (ARTIFACTS / f"worker-{WORKER}.log").read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    logged = [e for e in lines if e.get("step_id") == str(step_id)]
    assert logged and all(e["run_id"] == str(run_id) and e["agent"] == "t_echo" for e in logged)


def test_the_same_message_delivered_twice_runs_the_tool_once(factory, call):
    """Two messages for one step at once (two pool processes race for it), and one more after it finished."""
    _, step_id, log = call("t_echo", value=1, times=2)
    _wait_step(factory, step_id)
    time.sleep(1)  # the second delivery has found the step running, or finished

    assert calls_logged(log) == 1
    assert [e["type"] for e in _events(factory, step_id)].count("step.started") == 1


def test_a_redelivery_after_the_end_runs_nothing(tool_stack, factory, call):
    _, step_id, log = call("t_echo", value=2)
    done = _wait_step(factory, step_id)
    publish_tool_calls(tool_stack[2], [ToolCallMessage(str(step_id), 5.0)])
    time.sleep(1.5)

    assert calls_logged(log) == 1
    assert _wait_step(factory, step_id).finished_at == done.finished_at


def test_a_tool_past_its_timeout_is_stopped_in_the_pool_process_and_the_worker_goes_on(tool_stack, factory, call):
    """t_slow (timeout 1 s) would sleep 60 s: its timeout is recorded after about a second, and
    the same worker then serves the next call."""
    started = time.monotonic()
    _, step_id, log = call("t_slow", seconds=60)

    step = _wait_step(factory, step_id, timeout_s=20)

    assert time.monotonic() - started < 10
    assert step.output == {"error": "timeout: t_slow did not finish within 1s"}
    assert calls_logged(log) == 1
    assert tool_stack[3].poll() is None
    _, next_id, _ = call("t_echo", value=3)
    assert _wait_step(factory, next_id).status == "succeeded"


def test_a_raise_is_fed_back_and_the_run_goes_on(factory, call):
    run_id, step_id, _ = call("t_boom")

    step = _wait_step(factory, step_id)

    assert (step.status, step.output) == ("succeeded", {"error": "raised: ValueError: the tool broke"})
    run = _wait_run(factory, run_id)
    assert run.status == "succeeded"
    assert run.steps[-1].input["tool_results"][0]["error"] == "raised: ValueError: the tool broke"


def test_a_raise_fails_the_step_and_its_run_when_the_tool_says_so(factory, call):
    run_id, step_id, _ = call("t_boom_fail")

    step = _wait_step(factory, step_id)

    assert (step.status, step.error) == ("failed", "raised: RuntimeError: the tool broke for good")
    assert _wait_run(factory, run_id).status == "failed"


def test_bad_arguments_from_the_model_are_that_calls_error_and_the_worker_is_fine(tool_stack, factory, call):
    _, step_id, log = call("t_echo", arguments={"value": "seven"})

    step = _wait_step(factory, step_id)

    assert step.status == "succeeded" and step.output["error"].startswith("bad_arguments: ")
    assert "value: 'seven' is not of type 'integer'" in step.output["error"]
    assert calls_logged(log) == 0 and tool_stack[3].poll() is None


def test_a_failure_is_retried_by_celery_as_the_tool_allows(factory, call):
    """t_flaky (retries=1) fails its first call: the task is retried (self.retry) and the second succeeds."""
    _, step_id, log = call("t_flaky")

    step = _wait_step(factory, step_id, timeout_s=90)

    assert (step.status, step.attempts, step.output) == ("succeeded", 2, {"result": {"ok": True}})
    assert calls_logged(log) == 2
    types = [e["type"] for e in _events(factory, step_id)]
    assert types == ["step.started", "step.retrying", "step.started", "step.succeeded"]


def test_a_worker_killed_mid_call_is_not_run_again_beyond_the_tools_retries(tool_stack, factory, call):
    """t_die (retries=0) kills its pool process. The redelivered message finds the claim's lease
    still live and leaves it; once the lease runs out the sweeper sends the step again, and that
    delivery records the lost call for the agent instead of running the tool a second time."""
    run_id, step_id, log = call("t_die")

    step = _wait_step(factory, step_id, timeout_s=60)

    assert step.status == "succeeded"
    assert step.output["error"].startswith("worker_lost: t_die started 1 time(s) and never finished")
    assert calls_logged(log) == 1
    assert tool_stack[3].poll() is None  # the node replaced its pool process
    assert _wait_run(factory, run_id).status == "succeeded"
