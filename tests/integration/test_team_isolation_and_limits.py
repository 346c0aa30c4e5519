"""Each team sees only its own numbers, and no team (or guesser of keys) can flood the API.

The real Flask app against the test stack's PostgreSQL and Redis.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.helpers import app_with as _app
from tests.helpers import auth, form_token, make_team, ui_login

RUN = {"workflow": "summarize", "input": {"text": "Some text to summarise."}}


# --- 2. Each team sees its own numbers ---------------------------------------------------------


@pytest.fixture()
def two_teams_with_a_shared_call(settings):
    """Two teams whose steps shared one Gemini call: 2 steps of A, 5 of B, on a model of this test's own."""
    from taskapp.store.db import session_factory
    from taskapp.store.models import Batch, LlmCall, Step
    from taskapp.store.runs import create_run

    model = f"gemini-test-{uuid.uuid4().hex[:6]}"
    (a, key_a), (b, key_b) = make_team(settings), make_team(settings)
    batch_id, call_id, now = uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    with session_factory(settings).begin() as session:
        session.add(Batch(id=batch_id, agent="summarizer", model=model, size=7, reason="window", finished_at=now))
        session.add(
            LlmCall(
                id=call_id,
                batch_id=batch_id,
                agent="summarizer",
                model=model,
                step_count=7,
                status="ok",
                tokens_in=700,
                tokens_out=70,
                latency_ms=120,
                cost_usd=Decimal("0.07"),
            )
        )
        for team_id, n in ((a, 2), (b, 5)):
            run, _ = create_run(session, team_id=team_id, workflow="summarize", input={"text": "x"}, options={})
            run.status = "succeeded"
            for seq in range(n):
                session.add(
                    Step(
                        id=uuid.uuid4(),
                        run_id=run.id,
                        seq=seq,
                        agent="summarizer",
                        model=model,
                        status="succeeded",
                        input={},
                        batch_id=batch_id,
                        llm_call_id=call_id,
                        tokens_in=100,
                        tokens_out=10,
                        cost_usd=Decimal("0.01"),
                        started_at=now,
                        finished_at=now,
                    )
                )
    return model, key_a, key_b


def _row(agents: list[dict], model: str) -> dict:
    (row,) = [a for a in agents if a["model"] == model]
    return row


def test_a_team_reads_only_its_own_metrics_and_operators_read_the_fleet(settings, two_teams_with_a_shared_call):
    """/api/metrics: a team's key sees its steps, tokens and cost, no queue depths; METRICS_TOKEN and
    an operator team see the whole fleet."""
    from taskapp.store.db import session_factory
    from taskapp.store.teams import team_for_key

    model, key_a, key_b = two_teams_with_a_shared_call
    client = _app(settings, metrics_token="ops-" + "t" * 40).test_client()
    mine = client.get("/api/metrics", headers=auth(key_a)).json
    assert mine["scope"] == "team" and "queues" not in mine
    for model_gate in mine["quota"].values():  # used / limit and the model's state; not the fleet's backlog
        assert "waiting" not in model_gate and {"used", "limit"} <= set(model_gate["rpm"])
    row = _row(mine["agents"], model)
    assert (row["steps"], row["tokens_in"], row["cost_usd"], row["batches"], row["mean_batch_size"]) == (
        2,
        200,
        0.02,
        1,
        2.0,
    )
    assert mine["runs"] == {"succeeded": 1}
    theirs = _row(client.get("/api/metrics", headers=auth(key_b)).json["agents"], model)
    assert (theirs["steps"], theirs["cost_usd"]) == (5, 0.05)

    fleet = client.get("/api/metrics", headers=auth("ops-" + "t" * 40)).json
    assert fleet["scope"] == "fleet" and "orchestration" in fleet["queues"]
    assert all("waiting" in model_gate for model_gate in fleet["quota"].values())
    row = _row(fleet["agents"], model)
    assert (row["steps"], row["tokens_in"], row["cost_usd"], row["mean_batch_size"]) == (7, 700, 0.07, 7.0)

    with session_factory(settings).begin() as session:
        team = team_for_key(session, key_b)
        team.is_operator = True
    assert client.get("/api/metrics", headers=auth(key_b)).json["scope"] == "fleet"
    assert client.get("/api/metrics").status_code == 401


def test_prometheus_and_the_dashboard_are_scoped_to_the_team_too(settings, two_teams_with_a_shared_call):
    """/metrics with a team's key and /dashboard show the team's numbers only; queues for operators."""
    model, key_a, _ = two_teams_with_a_shared_call
    token = "ops-" + "p" * 40
    client = _app(settings, metrics_token=token).test_client()
    text = client.get("/metrics", headers=auth(key_a)).data.decode()
    assert f'taskapp_steps_total{{agent="summarizer",model="{model}",status="succeeded"}} 2.0' in text
    assert "taskapp_queue_depth" not in text
    fleet = client.get("/metrics", headers=auth(token)).data.decode()
    assert f'taskapp_steps_total{{agent="summarizer",model="{model}",status="succeeded"}} 7.0' in fleet
    assert 'taskapp_queue_depth{queue="orchestration"}' in fleet
    assert client.get("/metrics").status_code == 401

    ui_login(client, key_a)
    page = client.get("/dashboard").data.decode()
    assert model in page and "waiting in orchestration" not in page and "<th>Waiting</th>" not in page
    (cells,) = re.findall(rf"<td>summarizer</td><td>{model}</td><td>(\d+)</td>", page)
    assert cells == "2"


# --- 6. A per-team rate limit across web processes ----------------------------------------------


def test_the_api_rate_limit_is_per_team_and_holds_across_web_processes(settings):
    """API_RATE_LIMIT counts in Redis: two web processes share a team's budget; another team has its own."""
    (_, key_a), (_, key_b) = make_team(settings), make_team(settings)
    one, two = (_app(settings, api_rate_limit="3/minute").test_client() for _ in range(2))
    assert [one.get("/api/runs", headers=auth(key_a)).status_code for _ in range(2)] == [200, 200]
    assert two.get("/api/runs", headers=auth(key_a)).status_code == 200
    limited = two.get("/api/runs", headers=auth(key_a))
    assert limited.status_code == 429 and limited.json["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 61  # the rest of the minute, rounded up
    assert one.post("/api/runs", headers=auth(key_a), json=RUN).status_code == 429
    assert one.get("/api/runs", headers=auth(key_b)).status_code == 200  # its own budget
    assert one.get("/healthz").status_code == 200  # health checks are never limited


def test_sign_in_posts_are_limited_per_client_address_behind_the_proxy(settings):
    """Guessing keys costs a database read each: SIGN_IN_RATE_LIMIT per address (with PROXY_HOPS=1,
    the address the proxy saw); the operators' METRICS_TOKEN spends a budget of its own."""
    app = _app(
        settings,
        sign_in_rate_limit="3/minute",
        proxy_hops=1,
        api_rate_limit="2/minute",
        metrics_token="ops-" + "r" * 40,
    )
    client = app.test_client()
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    token = form_token(client.get("/login").data)

    def guess(addr: str) -> int:
        return client.post(
            "/login", data={"api_key": "tk_guess", "csrf_token": token}, headers={"X-Forwarded-For": addr}
        ).status_code

    assert [guess(address) for _ in range(4)] == [200, 200, 200, 429]
    assert guess("203.0.113.7") == 200  # another address has its own budget
    # Bad keys spend their address's API budget, not the operators'.
    bad = {"Authorization": "Bearer tk_bad", "X-Forwarded-For": address}
    assert [client.get("/api/runs", headers=bad).status_code for _ in range(3)] == [401, 401, 429]
    ops = {"Authorization": "Bearer ops-" + "r" * 40, "X-Forwarded-For": address}
    assert client.get("/api/metrics", headers=ops).status_code == 200
