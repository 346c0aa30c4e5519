"""Cached input over the wire: the simulator reports a repeated prefix as cached (as Gemini's
implicit cache does), the SDK reads it, and the call and its steps are billed at the cached price.

Real Redis and Postgres, the SDK over HTTP to the simulator; batches executed by hand (no workers).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import select

from taskapp.dev.gemini_sim import server as simulator
from taskapp.domain.pricing import Usage, cost_usd
from taskapp.domain.prompts import batch_schema, build_prompt, system_instruction
from taskapp.domain.tokens import estimate_tokens
from taskapp.llm.gemini import GeminiClient
from taskapp.settings import load_settings
from taskapp.store.models import LlmCall, Step
from tests.helpers import example


@pytest.fixture()
def sim() -> Iterator[simulator.SimulatorServer]:
    server = simulator.start(latency_ms=0)
    yield server
    server.shutdown()
    server.server_close()


def _generate(client: GeminiClient, agent, text: str, **extra):
    return client.generate(
        model=agent.model,
        system_instruction=system_instruction(agent),
        prompt=build_prompt([(f"step-{text}", {"text": text})]),
        response_schema=batch_schema(agent),
        temperature=0,
        max_output_tokens=200,
        **extra,
    )


def test_sdk_reads_cached_tokens_when_the_prefix_repeats(sim):
    """The second call with the same system instruction and schema has its system part cached; a
    prefix under the minimum never is; serviceTier is accepted (and logged), never refused."""
    agent = example("summarize").agents["summarizer"]
    client = GeminiClient(load_settings({}, gemini_base_url=sim.url))
    prefix = estimate_tokens(system_instruction(agent))
    sim.state.prompt_cache.configure({"cache_min_tokens": prefix + 1})  # just too short: never cached
    assert _generate(client, agent, "a").usage.tokens_cached == 0
    assert _generate(client, agent, "b").usage.tokens_cached == 0
    sim.state.prompt_cache.configure({"cache_min_tokens": prefix})
    first = _generate(client, agent, "c", service_tier="flex")
    second = _generate(client, agent, "d")
    assert first.usage.tokens_cached == 0  # under the minimum it was never remembered
    assert second.usage.tokens_cached == prefix > 0
    assert second.usage.tokens_in > second.usage.tokens_cached  # the per-step tasks are not cached
    log = sim.state.requests()
    assert [e["tokens_cached"] for e in log[-2:]] == [0, prefix]
    assert log[-2]["service_tier"] == "flex" and log[-1]["service_tier"] is None


def _started_run(settings, team, text: str):
    from taskapp.pipeline import orchestrator
    from taskapp.store.db import session_factory
    from taskapp.store.runs import create_run

    factory = session_factory(settings)
    with factory.begin() as session:
        run, _ = create_run(session, team_id=team[0], workflow="summarize", input={"text": text}, options={})
        run_id = run.id
    with factory.begin() as session:
        (ready,) = orchestrator.advance_runs(session, [run_id], settings).ready
    return run_id, ready


@pytest.fixture()
def cache_from_one_token(stack) -> Iterator[None]:
    """The stack's simulator caching any repeated prefix, from a clean cache; defaults again after."""
    stack.sim.state.prompt_cache.reset()
    stack.sim.state.prompt_cache.configure({"cache_min_tokens": 1})
    yield
    stack.sim.state.prompt_cache.reset()


def test_a_call_with_cached_input_is_recorded_and_billed_at_the_cached_price(
    team, settings, db_session, cache_from_one_token, no_open_runs
):
    """Two batches of the same agent: the second call's cached tokens land on its llm_calls row and
    its steps, it costs what the cached price says (less than full price by exactly the difference),
    and its steps' costs add up to the call's."""
    from sqlalchemy import func, update

    from taskapp.hotstate.buffers import Taken
    from taskapp.llm.gemini import get_client
    from taskapp.pipeline import orchestrator
    from taskapp.pipeline.executor import execute_batch
    from taskapp.store.batches import open_batch
    from taskapp.store.db import session_factory
    from taskapp.store.models import Batch

    factory = session_factory(settings)
    prices = settings.prices()
    batches: list[tuple[uuid.UUID, list[str]]] = []
    run_ids = []
    for texts in (["the first text"], ["a second text, longer than the first", "and a third"]):
        readies = []
        for text in texts:
            run_id, ready = _started_run(settings, team, text)
            run_ids.append(run_id)
            readies.append(ready)
        batch_id = uuid.uuid4()
        with factory.begin() as session:
            taken = [Taken(r.step_id, 0) for r in readies]
            open_batch(session, batch_id, readies[0].agent, readies[0].model, taken, "window", 60)
        batches.append((batch_id, [r.step_id for r in readies]))
    try:
        for batch_id, step_ids in batches:
            outcome = execute_batch(
                factory, get_client(settings), batch_id, step_ids, lease_s=60, stranded_s=60, prices=prices
            )
            assert outcome.succeeded == len(step_ids)
        (first,) = db_session.scalars(select(LlmCall).where(LlmCall.batch_id == batches[0][0])).all()
        (second,) = db_session.scalars(select(LlmCall).where(LlmCall.batch_id == batches[1][0])).all()
        agent = example("summarize").agents["summarizer"]
        assert first.tokens_cached == 0
        assert second.tokens_cached == estimate_tokens(system_instruction(agent)) > 0
        usage = Usage(second.tokens_in, second.tokens_out, second.tokens_cached)
        assert second.cost_usd == cost_usd(second.model, usage, prices)
        full = cost_usd(second.model, Usage(second.tokens_in, second.tokens_out), prices)
        price = prices.price(second.model)
        saved = (price.input - price.cached_input) * second.tokens_cached / 1_000_000
        assert abs(full - second.cost_usd - saved) <= Decimal("0.00000001")  # each side rounded once to 1e-8
        assert second.cost_usd < full
        steps = db_session.scalars(select(Step).where(Step.batch_id == batches[1][0])).all()
        assert sum(s.tokens_cached for s in steps) == second.tokens_cached
        assert sum((s.cost_usd for s in steps), Decimal(0)) == second.cost_usd
        assert all(0 < s.tokens_cached <= s.tokens_in for s in steps)
    finally:
        with factory.begin() as session:
            for run_id in run_ids:
                orchestrator.cancel_run(session, run_id)
            session.execute(update(Batch).where(Batch.id.in_([b for b, _ in batches])).values(finished_at=func.now()))
