"""A team's own share of the quota: concurrent runs, and tokens per day."""

from __future__ import annotations

import uuid

from tests.helpers import auth, taskapp_cli, wait_for_run


def _new_team(stack, *options: str) -> str:
    name = f"share-{uuid.uuid4().hex[:8]}"
    made = taskapp_cli(stack, "teams", "create", name, *options)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_a_team_never_runs_more_than_its_share_at_once(stack, client, workers, settings):
    key = _new_team(stack, "--max-concurrent-runs", "1")
    ids = [
        client.post(
            "/api/runs", headers=auth(key), json={"workflow": "summarize", "input": {"text": f"one at a time {i}"}}
        ).json["id"]
        for i in range(3)
    ]
    runs = [wait_for_run(settings, r, timeout_s=60) for r in ids]
    assert all(r.status == "succeeded" for r in runs)
    spans = sorted((r.started_at, r.finished_at) for r in runs)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end  # each started after the one before it ended


def test_a_team_over_its_daily_tokens_gets_a_clear_failure(stack, client, workers, settings):
    key = _new_team(stack, "--daily-tokens", "1")
    first = client.post(
        "/api/runs", headers=auth(key), json={"workflow": "summarize", "input": {"text": "spends the budget"}}
    ).json["id"]
    assert wait_for_run(settings, first).status == "succeeded"  # the budget was not yet spent when it started
    second = client.post(
        "/api/runs", headers=auth(key), json={"workflow": "summarize", "input": {"text": "over budget"}}
    ).json["id"]
    run = wait_for_run(settings, second)
    assert run.status == "failed" and run.error.startswith("team_daily_token_budget_exhausted")
    assert run.steps == []  # no call was made for it
