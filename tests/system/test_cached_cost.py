"""Cached input billed at its price, through real workers: two batches of the same agent, the second
one's shared prefix served from the (simulated) implicit cache, and every total the sum of its steps."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import select

from taskapp.domain.pricing import Usage, cost_usd, to_cents
from taskapp.store.models import LlmCall
from tests.helpers import auth, submit_summary, wait_for_run


@pytest.fixture()
def cache_from_one_token(stack) -> Iterator[None]:
    """The shipped agents' system instructions are shorter than Gemini's 1,024-token minimum: let
    the simulator cache any repeated prefix for this test, from a clean cache."""
    stack.sim.state.prompt_cache.reset()
    stack.sim.state.prompt_cache.configure({"cache_min_tokens": 1})
    yield
    stack.sim.state.prompt_cache.reset()


def test_the_second_batch_of_an_agent_is_billed_at_the_cached_price(
    client, team, workers, settings, db_session, cache_from_one_token
):
    _, key = team
    prices = settings.prices()  # the workers' prices too: neither sets GEMINI_PRICES
    runs = []
    for text in ("The first text to summarize, about tides.", "A second one, about the phases of the moon."):
        run = wait_for_run(settings, submit_summary(client, key, text))  # one after the other: two batches
        assert run.status == "succeeded", run.error
        runs.append(run)
    (first_step,), (second_step,) = runs[0].steps, runs[1].steps
    assert first_step.batch_id != second_step.batch_id
    first, second = (db_session.get(LlmCall, s.llm_call_id) for s in (first_step, second_step))
    assert first.tokens_cached == 0
    assert 0 < second.tokens_cached < second.tokens_in
    assert second_step.tokens_cached == second.tokens_cached
    billed = cost_usd(second.model, Usage(second.tokens_in, second.tokens_out, second.tokens_cached), prices)
    assert second.cost_usd == billed < cost_usd(second.model, Usage(second.tokens_in, second.tokens_out), prices)
    assert second_step.cost_usd == second.cost_usd  # the call's only step carries its whole cost

    for run in runs:
        calls = db_session.scalars(select(LlmCall).where(LlmCall.batch_id.in_({s.batch_id for s in run.steps}))).all()
        steps_cost = sum((s.cost_usd for s in run.steps), Decimal(0))
        assert steps_cost == sum((c.cost_usd for c in calls), Decimal(0))
        totals = client.get(f"/api/runs/{run.id}", headers=auth(key)).json["totals"]
        assert Decimal(totals["cost_usd_exact"]) == steps_cost
        assert totals["cost_usd_rounded"] == float(to_cents(steps_cost))
        assert totals["tokens_cached"] == sum(s.tokens_cached for s in run.steps)
