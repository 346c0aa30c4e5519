"""The tool runner against PostgreSQL: a tool step's claim, call and commit, run in this process.

The steps are made as the orchestrator stores them (tests.helpers.make_tool_step), in a run
pinned to the tool tests' workflow (tests/workflows). The worker's side of it (the Celery
task, its retries, a killed worker, time limits in a pool process) is tests/system/test_tools.py.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from taskapp.pipeline.tool_runner import run_tool_step
from taskapp.store import tool_steps
from taskapp.store.models import Run, Step
from tests.helpers import calls_logged, make_tool_step, step_events, tool_check_definition

LEASE_S = 30


@pytest.fixture(scope="module")
def definition(settings):
    return tool_check_definition(settings.gemini_models)


@pytest.fixture()
def factory(settings):
    from taskapp.store.db import session_factory

    return session_factory(settings)


@pytest.fixture()
def tool_step(factory, team, definition, tmp_path):
    """make(tool, **arguments) -> (run id, step id, the tool's call log); `log` is filled in."""
    log = tmp_path / f"calls-{uuid.uuid4().hex[:6]}.log"

    def make(tool: str, arguments=None, **args):
        run_id, step_id = make_tool_step(
            factory, team[0], definition, tool, {"log": str(log), **args} if arguments is None else arguments
        )
        return run_id, step_id, log

    return make


def _run(factory, step_id):
    return run_tool_step(factory, str(step_id), lease_s=LEASE_S, stranded_s=60)


def _step(db_session, step_id) -> Step:
    db_session.expire_all()
    step = db_session.get(Step, step_id)
    assert step is not None
    return step


def test_a_tool_call_stores_its_result_and_names_the_run_to_advance(factory, db_session, tool_step):
    run_id, step_id, log = tool_step("t_echo", value=3)

    done = _run(factory, step_id)

    assert (done.status, done.run_id) == ("succeeded", str(run_id))
    step = _step(db_session, step_id)
    assert (step.status, step.attempts, step.error, step.lease_until) == ("succeeded", 1, None, None)
    assert step.output == {"result": {"echo": 3, "calls": 1}}
    events = step_events(db_session, step_id)
    assert [e["type"] for e in events] == ["step.started", "step.succeeded"]
    assert all(e["tool"] == "t_echo" and e["agent"] == "t_echo" and e["seq"] == 2 for e in events)
    assert calls_logged(log) == 1


def test_a_delivery_of_a_finished_step_runs_nothing(factory, db_session, tool_step):
    _, step_id, log = tool_step("t_echo", value=1)
    assert _run(factory, step_id).status == "succeeded"

    again = _run(factory, step_id)

    assert (again.status, again.run_id) == ("skipped", None)
    assert calls_logged(log) == 1
    assert _step(db_session, step_id).output == {"result": {"echo": 1, "calls": 1}}


def test_a_raise_is_fed_back_to_the_agent_when_the_tool_says_so(factory, db_session, tool_step):
    _, step_id, _ = tool_step("t_boom")

    done = _run(factory, step_id)

    step = _step(db_session, step_id)
    assert (done.status, step.status, step.error) == ("succeeded", "succeeded", None)
    assert step.output == {"error": "raised: ValueError: the tool broke"}
    assert step_events(db_session, step_id)[-1]["error"] == "raised: ValueError: the tool broke"


def test_a_raise_fails_the_step_when_the_tool_says_so(factory, db_session, tool_step):
    _, step_id, _ = tool_step("t_boom_fail")

    done = _run(factory, step_id)

    step = _step(db_session, step_id)
    assert (done.status, step.status, step.output) == ("failed", "failed", None)
    assert step.error == "raised: RuntimeError: the tool broke for good"
    last = step_events(db_session, step_id)[-1]
    assert (last["type"], last["error"], last["tool"]) == ("step.failed", step.error, "t_boom_fail")


def test_a_tool_past_its_timeout_is_stopped_and_recorded(factory, db_session, tool_step):
    """t_slow would sleep 30 s (and swallows ordinary exceptions); its timeout is 1 s."""
    _, step_id, log = tool_step("t_slow", seconds=30)

    started = time.monotonic()
    _run(factory, step_id)
    took = time.monotonic() - started

    assert 1.0 <= took < 3.0, took
    step = _step(db_session, step_id)
    assert step.output == {"error": "timeout: t_slow did not finish within 1s"}
    assert calls_logged(log) == 1


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        (
            {"value": 0},
            "bad_arguments: (arguments): 'log' is a required property; value: 0 is less than the minimum of 1",
        ),
        ("not an object", "bad_arguments: the arguments must be an object"),
    ],
)
def test_bad_arguments_are_an_error_of_that_call_and_the_tool_never_runs(
    factory, db_session, tool_step, arguments, why
):
    _, step_id, log = tool_step("t_echo", arguments=arguments)

    done = _run(factory, step_id)

    assert done.status == "succeeded"  # t_echo feeds its errors back
    assert _step(db_session, step_id).output == {"error": why}
    assert calls_logged(log) == 0


def test_a_result_json_cannot_hold_is_an_error(factory, db_session, tool_step):
    _, step_id, _ = tool_step("t_not_json")

    _run(factory, step_id)

    error = _step(db_session, step_id).output["error"]
    assert error.startswith("not_json: the tool returned a set, which JSON cannot hold")


def test_a_failure_the_retries_allow_gives_the_step_back_for_the_retry(factory, db_session, tool_step):
    """t_flaky (retries=1) fails once: the step is queued again under a lease that keeps the
    sweeper off until the retry is due; the retry's delivery then succeeds."""
    _, step_id, log = tool_step("t_flaky")

    first = _run(factory, step_id)

    assert first.status == "retry" and first.run_id is None and 0 < first.retry_in_s <= 60
    step = _step(db_session, step_id)
    assert (step.status, step.attempts) == ("queued", 1)
    assert step.lease_until > datetime.now(UTC) + timedelta(seconds=59)
    retrying = step_events(db_session, step_id)[-1]
    assert retrying["type"] == "step.retrying" and retrying["reason"] == "raised: ConnectionError: first call fails"

    second = _run(factory, step_id)

    assert second.status == "succeeded"
    step = _step(db_session, step_id)
    assert (step.status, step.attempts, step.output) == ("succeeded", 2, {"result": {"ok": True}})
    assert calls_logged(log) == 2


def test_a_step_running_under_a_live_lease_is_left_to_its_holder(factory, db_session, tool_step):
    _, step_id, log = tool_step("t_echo", value=1)
    with factory.begin() as session:
        session.execute(
            update(Step)
            .where(Step.id == step_id)
            .values(status="running", attempts=1, lease_until=datetime.now(UTC) + timedelta(seconds=60))
        )

    assert _run(factory, step_id).status == "skipped"
    assert calls_logged(log) == 0 and _step(db_session, step_id).status == "running"


def test_a_dead_claim_with_no_attempt_left_is_recorded_without_running_the_tool(factory, db_session, tool_step):
    """t_echo allows one attempt; it started once (the step is running, its lease ran out) and
    never finished: its worker died. The tool is not run a second time."""
    _, step_id, log = tool_step("t_echo", value=1)
    with factory.begin() as session:
        session.execute(
            update(Step)
            .where(Step.id == step_id)
            .values(status="running", attempts=1, lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )

    done = _run(factory, step_id)

    assert done.status == "succeeded"
    error = _step(db_session, step_id).output["error"]
    assert error.startswith("worker_lost: t_echo started 1 time(s) and never finished")
    assert calls_logged(log) == 0


def test_nothing_runs_for_a_run_that_ended(factory, db_session, tool_step):
    run_id, step_id, log = tool_step("t_echo", value=1)
    with factory.begin() as session:
        session.execute(update(Run).where(Run.id == run_id).values(status="cancelled"))

    assert _run(factory, step_id).status == "skipped"
    assert calls_logged(log) == 0 and _step(db_session, step_id).status == "queued"


def test_the_sweeper_takes_back_tool_steps_whose_message_was_lost(factory, db_session, tool_step):
    """Queued past the wait, or running past its lease: each is to be sent again (with its tool's
    timeout), once per wait, not at every sweep."""
    _, queued_id, _ = tool_step("t_slow", seconds=1)
    _, running_id, _ = tool_step("t_echo", value=1)
    old = datetime.now(UTC) - timedelta(minutes=5)
    with factory.begin() as session:
        session.execute(update(Step).where(Step.id == queued_id).values(queued_at=old))
        session.execute(update(Step).where(Step.id == running_id).values(status="running", attempts=1, lease_until=old))
    now = datetime.now(UTC)

    with factory.begin() as session:
        sent = tool_steps.take_back_stale(session, now, queued_after_s=60)
    with factory.begin() as session:
        again = tool_steps.take_back_stale(session, now + timedelta(seconds=30), queued_after_s=60)

    mine = {m.step_id: m.timeout_s for m in sent if m.step_id in (str(queued_id), str(running_id))}
    assert mine == {str(queued_id): 1.0, str(running_id): 5.0}
    assert not {m.step_id for m in again} & set(mine)
    assert _step(db_session, running_id).status == "queued"
    requeued = step_events(db_session, running_id)[-1]
    assert (requeued["type"], requeued["reason"]) == ("step.queued", "lease expired (worker lost)")
