"""The shipped support example end to end: triage, the route to a specialist, its tool call on the
tools queue, the specialist again with the result, the reviewer; on the session's workers, which
load examples/workflows (its tools included), and the simulator over HTTP."""

from __future__ import annotations

import pytest

from tests.helpers import auth, wait_for_run


@pytest.fixture()
def triage_says(stack):
    """Force the classifier's category (the simulator picks one of the enum otherwise)."""

    def force(category: str) -> None:
        stack.sim.state.configure({"output_overrides": {"category": category}})

    yield force
    stack.sim.state.configure({"output_overrides": {}})


def test_a_refund_request_goes_to_the_refund_desk_which_asks_the_calculator(
    workers, client, team, settings, triage_says
):
    triage_says("refund")
    resp = client.post(
        "/api/runs",
        headers=auth(team[1]),
        json={
            "workflow": "support",
            "input": {"message": "My keyboard arrived broken; I want my money back.", "order_id": "A-1001"},
            "options": {"priority": "interactive"},
        },
    )
    assert resp.status_code == 202, resp.json

    run = wait_for_run(settings, resp.json["id"], timeout_s=60)

    assert run.status == "succeeded", run.error
    stages = [(s.stage, s.kind, s.agent) for s in run.steps]
    assert stages[0] == ("triage", "agent", "classifier")
    assert ("refunds", "agent", "refund_desk") in stages and stages[-1] == ("review", "agent", "reviewer")
    tool_steps = [s for s in run.steps if s.kind == "tool"]
    assert tool_steps and all(s.stage == "refunds" and s.status == "succeeded" for s in tool_steps)
    # The simulator copies the order number into the call, so the tool finds the order.
    assert all(s.input["arguments"]["order_id"] == "A-1001" and "result" in s.output for s in tool_steps)
    answered = [s for s in run.steps if s.agent == "refund_desk"][-1]
    assert answered.input["tool_results"][0]["result"] == tool_steps[0].output["result"]
    assert run.output["category"] == "refund" and run.output["reply"]
