"""Cost accounting: prices per model and how one batched call's bill splits across its steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# USD per 1M tokens (paid tier; output includes thinking). Illustrative, overridable.
PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "gemini-2.5-pro": (Decimal("1.25"), Decimal("10.00")),
    "gemini-2.5-flash": (Decimal("0.30"), Decimal("2.50")),
    "gemini-2.5-flash-lite": (Decimal("0.10"), Decimal("0.40")),
    "gemini-2.0-flash": (Decimal("0.10"), Decimal("0.40")),
}
_MILLION = Decimal(1_000_000)
_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True)
class Usage:
    tokens_in: int
    tokens_out: int


def cost_usd(model: str, usage: Usage, prices: Mapping[str, tuple[Decimal, Decimal]] = PRICES) -> Decimal:
    """The price of one call; an unknown model costs what the dearest known one does (never 0)."""
    price_in, price_out = prices.get(model) or max(prices.values())
    cost = (price_in * usage.tokens_in + price_out * usage.tokens_out) / _MILLION
    return cost.quantize(_QUANTUM, rounding=ROUND_HALF_UP)


def split_usage(total: Usage, input_weights: Sequence[int], output_weights: Sequence[int]) -> list[Usage]:
    """Share one call's tokens among its steps, in proportion to their prompt and answer sizes.

    The shares add up exactly to the call's totals, so per-step sums equal the bill.
    """
    return [
        Usage(i, o)
        for i, o in zip(
            _apportion(total.tokens_in, input_weights), _apportion(total.tokens_out, output_weights), strict=True
        )
    ]


def _apportion(total: int, weights: Sequence[int]) -> list[int]:
    if not weights:
        return []
    weights = [max(0, w) for w in weights]
    whole = sum(weights)
    if whole == 0:
        weights, whole = [1] * len(weights), len(weights)
    shares = [total * w // whole for w in weights]
    # Largest remainders get the leftover tokens, so the parts sum to the total.
    order = sorted(range(len(weights)), key=lambda k: (total * weights[k]) % whole, reverse=True)
    for k in order[: total - sum(shares)]:
        shares[k] += 1
    return shares
