"""Domain logic on its own: workflow decisions, kill switches, context trimming, cost accounting, answer parsing."""

from __future__ import annotations

import dataclasses
import json

import pytest

from taskapp.domain import prompts
from taskapp.domain.batching import Outlook, company_can_come
from taskapp.domain.definitions.flow import DefinedWorkflow
from taskapp.domain.engine import Decision, Limits, RunOptions, StepState, decide
from taskapp.domain.pricing import Usage, cost_usd, split_usage
from taskapp.domain.prompts import batch_schema, parse_answers
from taskapp.domain.tokens import TRIM_MARK, trim_to_budget
from tests.helpers import example

RESEARCH = DefinedWorkflow(example("research"))
Q = {"question": "Why is the sky blue?", "max_revisions": 1}


def done(seq, agent, output, inp=None, tokens=10):
    return StepState(seq, agent, "succeeded", inp or {}, output, None, tokens)


def test_research_workflow_walks_plan_research_write_review():
    """Each phase follows from the last; researchers fan out one per sub-question."""
    steps = []
    d = decide(RESEARCH, Q, steps, Limits())
    assert [n.agent for n in d.new_steps] == ["planner"]
    steps.append(done(1, "planner", {"sub_questions": ["a?", "b?", "c?"]}))
    d = decide(RESEARCH, Q, steps, Limits())
    assert [n.input["sub_question"] for n in d.new_steps] == ["a?", "b?", "c?"]
    steps += [done(2 + i, "researcher", {"findings": f"f{i}"}, {"sub_question": q}) for i, q in enumerate("abc")]
    d = decide(RESEARCH, Q, steps, Limits())
    assert d.new_steps[0].agent == "writer" and len(d.new_steps[0].input["findings"]) == 3
    steps.append(done(5, "writer", {"title": "T", "draft": "D1"}))
    d = decide(RESEARCH, Q, steps, Limits())
    assert d.new_steps[0].agent == "reviewer" and d.new_steps[0].input["draft"] == "D1"
    steps.append(done(6, "reviewer", {"approved": False, "feedback": "more"}))
    d = decide(RESEARCH, Q, steps, Limits())
    assert d.new_steps[0].agent == "writer" and d.new_steps[0].handoff
    assert "handoff" not in d.new_steps[0].input  # a field of the step: the prompt never carries it
    assert d.new_steps[0].input["feedback"] == "more" and d.new_steps[0].input["previous_draft"] == "D1"
    steps.append(done(7, "writer", {"title": "T2", "draft": "D2"}, d.new_steps[0].input))
    steps.append(done(8, "reviewer", {"approved": False, "feedback": "still"}))
    d = decide(RESEARCH, Q, steps, Limits())  # revisions exhausted: finish with the latest draft
    assert d.output == {"title": "T2", "answer": "D2", "approved": False, "revisions": 1, "review": "still"}


def test_pending_steps_mean_wait_and_a_failed_step_fails_the_run():
    """Nothing new while a phase is in flight; a failed step ends the run with its reason."""
    pending = [done(1, "planner", {"sub_questions": ["a"]}), StepState(2, "researcher", "running", {})]
    wait = decide(RESEARCH, Q, pending, Limits())
    assert wait == Decision() and not wait.finished
    failed = [StepState(1, "planner", "failed", {}, None, "bad schema")]
    assert "step 1 (planner) failed: bad schema" in decide(RESEARCH, Q, failed, Limits()).failure


def test_kill_switches_end_runs():
    """Step limit, token budget, handoff depth and run timeout each stop a run."""
    plan = [done(1, "planner", {"sub_questions": ["a", "b", "c"]})]
    assert decide(RESEARCH, Q, plan, Limits(max_steps=3)).failure.startswith("step_limit_exceeded")
    assert decide(RESEARCH, Q, plan, Limits(token_budget=5)).failure.startswith("token_budget_exceeded")
    assert decide(RESEARCH, Q, plan, Limits(run_timeout_s=1), elapsed_s=2).failure.startswith("run_timeout")
    loop = [done(1, "writer", {"draft": "d"}), done(2, "reviewer", {"approved": False, "feedback": "x"})]
    many = {"question": "q", "max_revisions": 10}
    assert decide(RESEARCH, many, loop, Limits(max_handoff_depth=0)).failure.startswith("routing_exhausted")
    handed = [
        done(1, "writer", {"draft": "d"}),
        done(2, "reviewer", {"approved": False, "feedback": "x"}),
        StepState(3, "writer", "succeeded", {}, {"draft": "d2"}, handoff=True),
        done(4, "reviewer", {"approved": False, "feedback": "y"}),
    ]
    assert decide(RESEARCH, many, handed, Limits(max_handoff_depth=1)).failure.startswith("routing_exhausted")
    assert decide(RESEARCH, many, handed, Limits(max_handoff_depth=2)).new_steps[0].handoff


def test_run_options_only_tighten_server_limits():
    """A caller can lower a limit but never raise it."""
    server = Limits(max_steps=10, token_budget=100)
    mine = RunOptions(overrides={"max_steps": 50, "token_budget": 20}).limits(server)
    assert mine.max_steps == 10 and mine.token_budget == 20


def test_trim_to_budget_is_fair_and_fits():
    """Short parts stay whole; long ones share what is left; the total fits the budget."""
    parts = ["short", "x" * 4000, "y" * 4000]
    out = trim_to_budget(parts, 500)
    assert out[0] == "short"
    assert sum(len(p) for p in out) <= 500 * 4
    assert out[1].endswith(TRIM_MARK) and abs(len(out[1]) - len(out[2])) <= 1
    assert trim_to_budget(["a", "b"], 100) == ["a", "b"]


def test_split_usage_adds_up_to_the_bill():
    """Per-step shares of a batched call sum exactly to its tokens."""
    shares = split_usage(Usage(1001, 333), [10, 20, 30], [5, 5, 1])
    assert sum(s.tokens_in for s in shares) == 1001 and sum(s.tokens_out for s in shares) == 333
    assert shares[2].tokens_in > shares[0].tokens_in
    assert str(cost_usd("gemini-2.5-flash", Usage(1_000_000, 1_000_000))) == "2.80000000"
    assert cost_usd("unknown-model", Usage(1000, 0)) > 0


def test_parse_answers_isolates_each_step():
    """Missing, extra, duplicate and malformed answers affect only their own step."""
    agent = example("research").agents["reviewer"]
    text = json.dumps(
        {
            "answers": [
                {"step_id": "a", "output": {"approved": True, "feedback": "ok"}},
                {"step_id": "b", "output": {"approved": "maybe?"}},
                {"step_id": "zzz", "output": {"approved": True, "feedback": "not asked"}},
                {"step_id": "a", "output": {"approved": False, "feedback": "duplicate"}},
            ]
        }
    )
    got = parse_answers(text, agent, ["a", "b", "c"])
    assert got["a"].output == {"approved": True, "feedback": "ok"}
    assert not got["b"].ok and "schema" in got["b"].error
    assert not got["c"].ok and "no answer" in got["c"].error
    assert "zzz" not in got
    assert all(not a.ok for a in parse_answers("not json", agent, ["a"]).values())


def test_minute_series_fills_every_minute():
    """Quota-use charts get one point per minute, zeros included, oldest first."""
    from datetime import UTC, datetime, timedelta

    from taskapp.store.metrics import ModelMinute, minute_series

    now = datetime(2026, 1, 1, 12, 30, 20, tzinfo=UTC)
    points = [ModelMinute("m", now.replace(second=0) - timedelta(minutes=2), 7, 70)]
    series = minute_series(points, minutes=5, now=now)["m"]
    assert [p.requests for p in series] == [0, 0, 7, 0, 0]
    assert series[-1].minute == now.replace(second=0)


def test_batches_are_cut_oldest_first_and_never_over_the_maximum():
    from taskapp.domain.batching import BatchPolicy, chunks, wait_stats

    assert chunks(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert chunks([], 4) == []
    assert wait_stats([100, 300]).mean_ms == 200 and wait_stats([100, 300]).max_ms == 300
    assert wait_stats([]).max_ms == 0
    with pytest.raises(ValueError):
        BatchPolicy(max_size=0, max_wait_ms=10)


def test_a_batch_schema_is_built_once_and_handed_out_as_a_copy():
    """One answer per step id, each the agent's output schema; the SDK edits what it gets."""
    agent = example("summarize").agents["summarizer"]
    first = batch_schema(agent)
    assert agent.id in prompts._schemas  # kept for the next call
    answer = first["properties"]["answers"]["items"]
    assert answer["required"] == ["step_id", "output"] and answer["properties"]["output"] == agent.output_schema
    first["properties"].clear()
    assert batch_schema(agent)["properties"]["answers"]["type"] == "array"


# -- batching: the idle flush ------------------------------------------------------------

QUIET = Outlook(runs_to_start=False, batches_in_flight=False, runs_between_steps=False, steps_unbuffered=False)


@pytest.mark.parametrize(
    "change",
    [{"runs_to_start": True}, {"batches_in_flight": True}, {"runs_between_steps": True}, {"steps_unbuffered": True}],
)
def test_a_buffer_waits_while_anything_could_still_join_it(change):
    assert not company_can_come(QUIET, first_step_agent=False)  # nothing on its way: flush now
    assert company_can_come(dataclasses.replace(QUIET, **change), first_step_agent=False)


def test_a_buffer_of_runs_first_steps_always_waits_its_window():
    """The next submission joins it at once: only the window can say how long to wait for one."""
    assert company_can_come(QUIET, first_step_agent=True)


@pytest.mark.parametrize("name, run_input", [("research", Q), ("summarize", {"text": "some text"})])
def test_a_workflows_first_agent_takes_every_runs_first_step(name, run_input):
    workflow = DefinedWorkflow(example(name))
    first = decide(workflow, run_input, [], Limits())
    assert {n.agent for n in first.new_steps} == {workflow.agents[0]} == {example(name).first_agent.name}


def test_after_a_failed_call_a_quota_refusal_waits_a_transient_error_retries_and_the_rest_fail():
    """The executor's choice after a Gemini error, as a pure function of the error."""
    from taskapp.domain.retry import AfterError, after_call_error

    choose = {"retry_after_s": None, "give_up": False, "default_delay_s": 1.0}
    assert after_call_error(quota_delay_s=12.0, retryable=True, **choose) == AfterError("wait", 12.0)
    assert after_call_error(quota_delay_s=None, retryable=True, **choose) == AfterError("retry", 1.0)
    assert after_call_error(quota_delay_s=None, retryable=True, **(choose | {"retry_after_s": 7.5})) == AfterError(
        "retry", 7.5
    )
    assert after_call_error(quota_delay_s=None, retryable=True, **(choose | {"give_up": True})).action == "fail"
    assert after_call_error(quota_delay_s=None, retryable=False, **choose).action == "fail"
    assert after_call_error(quota_delay_s=3.0, retryable=False, **(choose | {"give_up": True})).action == "wait"


def test_the_summarizer_reads_all_the_text_it_accepts():
    """The limit is what the summarizer reads (its input schema's maxLength): accepted text goes
    whole to its step, whatever CONTEXT_TOKEN_BUDGET says (that budget trims context handed
    between agents), and longer text is refused at the door."""
    from taskapp.domain.definitions.inputs import input_errors

    summarize = example("summarize")
    most = summarize.input_schema["properties"]["text"]["maxLength"]
    longest = "z" * most
    (step,) = decide(DefinedWorkflow(summarize), {"text": longest}, [], Limits(context_token_budget=100)).new_steps
    assert step.input == {"text": longest}
    _, errors = input_errors(summarize.input_schema, {"text": longest + "zz"})
    assert errors and errors[0]["field"] == "text" and f"{most:,}" in errors[0]["message"]
    assert TRIM_MARK not in step.input["text"]
