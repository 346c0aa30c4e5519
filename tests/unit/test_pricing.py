"""Prices as configuration, cached input billed at its price, and bills that split to the 1e-8 dollar."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import pytest

from taskapp.dev.gemini_sim.prompt_cache import PromptCache
from taskapp.domain.pricing import (
    DEFAULT_PRICES,
    QUANTUM,
    ModelPrice,
    PriceTable,
    Usage,
    cost_usd,
    exact_cost,
    split_cost,
    split_usage,
    to_cents,
)
from taskapp.domain.prompts import batch_schema, build_prompt, system_instruction
from taskapp.settings import SettingsError, load_settings


def test_cached_tokens_cost_less_by_exactly_the_price_difference():
    flash = DEFAULT_PRICES["gemini-2.5-flash"]
    full = cost_usd("gemini-2.5-flash", Usage(10_000, 500))
    cached = cost_usd("gemini-2.5-flash", Usage(10_000, 500, tokens_cached=4_000))
    assert full - cached == (flash.input - flash.cached_input) * 4_000 / 1_000_000 == Decimal("0.00108")
    # 10,000 in at $0.30/M and 500 out at $2.50/M; then 4,000 of the input at $0.03/M instead.
    assert full == Decimal("0.00425000") and cached == Decimal("0.00317000")


def test_a_call_costs_to_1e8_dollars_and_is_rounded_only_there():
    prices = PriceTable({"m": {"input": "0.075", "cached_input": "0.0125", "output": "0.3"}})
    one = cost_usd("m", Usage(1, 0), prices)  # 7.5e-8: half up to 8e-8
    assert one == Decimal("0.00000008") and one.as_tuple().exponent == -8
    assert exact_cost(prices.price("m"), Usage(3, 0, 1)) == Decimal("0.0000001625")
    assert cost_usd("m", Usage(3, 0, 1), prices) == Decimal("0.00000016")
    # Summing first, rounding to the cent once (shown totals), not per call.
    calls = [cost_usd("gemini-2.5-flash-lite", Usage(40, 10)) for _ in range(1000)]  # $0.000008 each
    assert sum(calls, Decimal(0)) == Decimal("0.008") and to_cents(sum(calls, Decimal(0))) == Decimal("0.01")


def test_split_usage_shares_cached_tokens_and_adds_up_exactly():
    total = Usage(1001, 333, tokens_cached=777)
    shares = split_usage(total, [10, 20, 30, 1], [5, 5, 1, 0])
    assert sum((s for s in shares), Usage(0, 0)) == total
    assert all(0 <= s.tokens_cached <= s.tokens_in for s in shares)
    # A cached total equal to the input: every step's input is all cached, rounding notwithstanding.
    all_cached = split_usage(Usage(7, 1, 7), [1, 1, 1], [1, 1, 1])
    assert [s.tokens_cached for s in all_cached] == [s.tokens_in for s in all_cached]


def test_split_cost_adds_up_to_the_call_exactly():
    price = DEFAULT_PRICES["gemini-2.5-flash"]
    total = Usage(12_345, 678, 5_000)
    call = cost_usd("gemini-2.5-flash", total)
    shares = split_usage(total, [3, 1, 7], [2, 2, 9])
    parts = split_cost(call, [exact_cost(price, s) for s in shares])
    assert sum(parts, Decimal(0)) == call
    assert all(p.as_tuple().exponent >= -8 and p >= 0 for p in parts)
    assert split_cost(Decimal("0.00000010"), [Decimal(0)] * 3) == [Decimal("4E-8"), Decimal("3E-8"), Decimal("3E-8")]
    assert Decimal("1e-8") == QUANTUM


def test_price_table_defaults_wildcard_and_unknown_models():
    table = PriceTable({"*": {"input": 2, "output": 8}, "gemini-2.5-flash": {"cached_input": 0.075}})
    assert table.price("gemini-2.5-flash") == ModelPrice(Decimal("0.30"), Decimal("0.075"), Decimal("2.50"))
    other = table.price("gemini-9-ultra")
    assert (other.input, other.output) == (Decimal(2), Decimal(8))
    assert other.cached_input == Decimal(2) * Decimal("0.1")  # the dearest default (pro): its cached fraction kept
    assert PriceTable().price("gemini-9-ultra") == DEFAULT_PRICES["gemini-2.5-pro"]  # never 0
    assert cost_usd("unknown-model", Usage(1000, 0)) > 0


def test_batch_and_flex_discounts_are_configured_prices():
    table = PriceTable({"gemini-2.5-flash": {"batch_discount": 0.5, "flex_discount": "0.25"}})
    price = table.price("gemini-2.5-flash")
    assert price.discounted("batch").input == Decimal("0.150") and price.discounted("flex").output == Decimal("1.8750")
    assert price.discounted("standard") == price
    usage = Usage(1_000_000, 1_000_000, 500_000)
    assert exact_cost(price.discounted("batch"), usage) * 2 == exact_cost(price, usage)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("{not json", r"GEMINI_PRICES: not JSON"),
        ('{"gemini-2.5-flash": {"input": -1}}', r"GEMINI_PRICES: price for .gemini-2.5-flash.: input must not be neg"),
        ('{"*": {"inptu": 0.3}}', r"GEMINI_PRICES: price for '\*': unknown field inptu"),
        ('{"m": {"output": "cheap"}}', r"output must be a number"),
        ('{"m": {"batch_discount": 1.5}}', r"batch_discount must be a fraction"),
        ('{"m": {"input": 0.1, "cached_input": 0.2}}', r"cached_input must not exceed input"),
        ('{"m": 0.3}', r"price for 'm': an object"),
    ],
)
def test_gemini_prices_are_validated_with_the_variable_named(value, needle):
    with pytest.raises(SettingsError, match=needle):
        load_settings({"GEMINI_PRICES": value})


def test_gemini_prices_from_the_environment():
    settings = load_settings({"GEMINI_PRICES": '{"gemini-2.5-flash-lite": {"input": 0.2, "cached_input": 0.05}}'})
    assert settings.prices().price("gemini-2.5-flash-lite").cached_input == Decimal("0.05")
    assert load_settings({}).prices().price("gemini-2.5-flash") == DEFAULT_PRICES["gemini-2.5-flash"]


def test_simulated_prompt_cache_counts_a_repeated_long_prefix_only():
    cache = PromptCache(min_tokens=100, ttl_s=60)
    schema = {"type": "object"}
    assert cache.cached_tokens("m", "S" * 800, schema, 200, now=0) == 0  # first sight
    assert cache.cached_tokens("m", "S" * 800, schema, 200, now=30) == 200  # repeated
    assert cache.cached_tokens("m", "S" * 800, {"type": "array"}, 200, now=31) == 0  # another schema
    assert cache.cached_tokens("other", "S" * 800, schema, 200, now=32) == 0  # another model
    assert cache.cached_tokens("m", "S" * 800, schema, 200, now=200) == 0  # expired (seen at 30)
    assert cache.cached_tokens("m", "short", schema, 99, now=201) == 0  # below the minimum
    assert cache.cached_tokens("m", "short", schema, 99, now=202) == 0


@pytest.mark.parametrize(("workflow", "agent_name"), [("research", "researcher"), ("support", None)])
def test_two_batches_of_an_agent_share_their_prefix_byte_for_byte(workflow, agent_name):
    """What Gemini's implicit cache can reuse: the system instruction (system prompt, batch rules,
    tools) and the response schema are the agent's alone, identical for every batch; the per-step
    tasks, with their ids, come after them in the user turn."""
    from tests.helpers import example

    agents = example(workflow).agents
    agent = agents[agent_name] if agent_name else next(a for a in agents.values() if a.tools)
    one = [("11111111-aaaa", {"question": "Q", "sub_question": "first"})]
    two = [("22222222-bbbb", {"question": "Q", "sub_question": "second"}), ("33333333-cccc", {"x": 1})]
    assert system_instruction(agent) == system_instruction(agent)
    assert json.dumps(batch_schema(agent)) == json.dumps(batch_schema(agent))
    for sid in ("11111111-aaaa", "22222222-bbbb"):
        assert sid not in system_instruction(agent) and sid not in json.dumps(batch_schema(agent))
    first, second = build_prompt(one), build_prompt(two, repair="missing field")
    shared = system_instruction(agent) + json.dumps(batch_schema(agent))
    # Laid out as the request is: instruction, schema, then the tasks: the common prefix covers the first two.
    common = os.path.commonprefix([shared + first, shared + second])
    assert len(common) >= len(shared) and first.startswith("TASKS:\n") and second.startswith("TASKS:\n")


def test_totals_are_shown_to_the_cent_and_the_exact_amount_beside_them():
    from web.formatting import money, money_exact, money_total

    assert money_total(Decimal("0.005")) == "$0.01" and money_total(0.0049) == "$0.00"
    assert money_total(Decimal("1234.565")) == "$1,234.57" and money_total(None) == ""
    assert money_exact(0.000412) == "$0.00041200" and money_exact(Decimal("0.00000001")) == "$0.00000001"
    assert money(0.000412) == "$0.000412"  # a call's or a step's cost keeps its micro-dollars
