"""Every run ends: each kill switch stops a real run (API limits, real workers, the simulator)."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import auth, wait_for_run


def _research(client, key: str, limits: dict, **run_input) -> str:
    resp = client.post(
        "/api/runs",
        headers=auth(key),
        json={
            "workflow": "research",
            "input": {"question": "How do tides work?", **run_input},
            "options": {"limits": limits, "priority": "interactive"},
        },
    )
    assert resp.status_code == 202, resp.json
    return resp.json["id"]


@pytest.mark.parametrize(
    "limits, reason",
    [
        ({"max_steps": 2}, "step_limit_exceeded"),
        ({"token_budget": 1}, "token_budget_exceeded"),
    ],
)
def test_step_limit_and_token_budget_end_the_run(client, team, workers, settings, limits, reason):
    _, key = team
    run = wait_for_run(settings, _research(client, key, limits))
    assert run.status == "failed" and run.error.startswith(reason)
    assert all(s.status in ("succeeded", "cancelled") for s in run.steps)  # nothing left pending


def test_handoff_depth_ends_a_run_whose_reviewer_never_approves(client, team, workers, settings, stack):
    httpx.post(f"{stack.sim_url}/_sim/config", json={"output_overrides": {"approved": False}}).raise_for_status()
    try:
        _, key = team
        run = wait_for_run(settings, _research(client, key, {"max_handoff_depth": 1}, max_revisions=5))
    finally:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"output_overrides": {}})
    assert run.status == "failed" and run.error.startswith("routing_exhausted")
    assert [s.agent for s in run.steps].count("writer") == 2  # the first draft, one handoff back, no more


def test_run_timeout_ends_a_run_even_mid_call(client, team, workers, settings, stack):
    """The wall clock is watched by the sweeper too: a run past its timeout ends while its
    step is still in a (slow) Gemini call, and that step's late answer is discarded."""
    httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 6000}).raise_for_status()
    try:
        _, key = team
        run = wait_for_run(settings, _research(client, key, {"run_timeout_s": 1}), timeout_s=30)
    finally:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 0})
    assert run.status == "failed" and run.error.startswith("run_timeout")
    assert (run.finished_at - run.started_at).total_seconds() < 6  # it did not wait for the call
    assert [s.status for s in run.steps] == ["cancelled"]  # the planner's answer never landed
