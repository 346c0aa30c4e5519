"""Cost accounting: prices per model, what one call costs, and how its bill splits across its steps.

Prices are configuration (GEMINI_PRICES, read by taskapp.settings); the defaults below are
Google's published paid-tier prices (docs/configuration.md says when they were taken).
Money is Decimal throughout: a call's cost is exact to 1e-8 dollars (finer than the
micro-dollar the issue asks for, and what `Numeric(14, 8)` stores), and step shares are
apportioned in those units so they add up exactly to the call. Nothing is rounded to the
cent until it is shown (`to_cents`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

_MILLION = Decimal(1_000_000)
QUANTUM = Decimal("0.00000001")  # 1e-8 USD: the unit a call's cost is stored in
CENT = Decimal("0.01")


@dataclass(frozen=True)
class ModelPrice:
    """USD per 1M tokens (output includes thinking), and the discounts of the cheaper lanes.

    `cached_input` is what an input token served from Gemini's (implicit) prompt cache costs.
    `batch_discount` (Batch API) and `flex_discount` (the flex service tier) are fractions off
    the whole bill, e.g. 0.5; configurable now, not yet used by any call path (other items of
    issue 21 add the lanes that use them).
    """

    input: Decimal
    cached_input: Decimal
    output: Decimal
    batch_discount: Decimal = Decimal("0.5")
    flex_discount: Decimal = Decimal("0.5")

    def __post_init__(self) -> None:
        for name in ("input", "cached_input", "output"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("batch_discount", "flex_discount"):
            if not Decimal(0) <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be a fraction in [0, 1)")
        if self.cached_input > self.input:
            raise ValueError("cached_input must not exceed input")

    def discounted(self, lane: str) -> ModelPrice:
        """This price on a lane: `standard`, `batch` (Batch API) or `flex` (flex service tier)."""
        off = {"standard": Decimal(0), "batch": self.batch_discount, "flex": self.flex_discount}[lane]
        keep = 1 - off
        return replace(self, input=self.input * keep, cached_input=self.cached_input * keep, output=self.output * keep)


PRICE_FIELDS = tuple(f.name for f in fields(ModelPrice))

# Google's paid-tier prices for prompts up to 200k tokens (docs/configuration.md, "Prices").
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gemini-2.5-pro": ModelPrice(Decimal("1.25"), Decimal("0.125"), Decimal("10.00")),
    "gemini-2.5-flash": ModelPrice(Decimal("0.30"), Decimal("0.03"), Decimal("2.50")),
    "gemini-2.5-flash-lite": ModelPrice(Decimal("0.10"), Decimal("0.01"), Decimal("0.40")),
    "gemini-2.0-flash": ModelPrice(Decimal("0.10"), Decimal("0.025"), Decimal("0.40")),
}
_DEAREST = max(DEFAULT_PRICES.values(), key=lambda p: (p.input, p.output))


@dataclass(frozen=True)
class Usage:
    """A call's (or a step's share of a call's) tokens. `tokens_cached` is part of `tokens_in`."""

    tokens_in: int
    tokens_out: int
    tokens_cached: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.tokens_in + other.tokens_in,
            self.tokens_out + other.tokens_out,
            self.tokens_cached + other.tokens_cached,
        )


class PriceTable:
    """Prices per model: the configured entries over the defaults; `"*"` for models not named.

    A model neither configured nor known costs what the dearest known one does (never 0).
    """

    def __init__(self, overrides: Mapping[str, Mapping[str, object]] | None = None) -> None:
        overrides = overrides or {}
        self._prices = {model: price_for(model, overrides) for model in {*DEFAULT_PRICES, *overrides} - {"*"}}
        # A model named nowhere: the "*" entry over the dearest default, else the dearest price here.
        self._other = (
            price_for("*", overrides)
            if "*" in overrides
            else max(self._prices.values(), key=lambda p: (p.input, p.output))
        )

    def price(self, model: str) -> ModelPrice:
        return self._prices.get(model, self._other)


def price_for(model: str, overrides: Mapping[str, Mapping[str, object]]) -> ModelPrice:
    """A model's price: its entry (else "*") over its default (else the dearest default).

    Raises:
        ValueError: an unknown field, a value that is not a number, or a price out of range.
    """
    base = DEFAULT_PRICES.get(model) or _DEAREST
    own = overrides.get(model) or overrides.get("*") or {}
    return _with(base, own)


def _with(base: ModelPrice, own: Mapping[str, object]) -> ModelPrice:
    unknown = set(own) - set(PRICE_FIELDS)
    if unknown:
        raise ValueError(f"unknown field {', '.join(sorted(unknown))} (known: {', '.join(PRICE_FIELDS)})")
    values: dict[str, Decimal] = {}
    for name, raw in own.items():
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise ValueError(f"{name} must be a number")
        try:
            values[name] = Decimal(str(raw))  # str(): 0.1 stays 0.1, not the float's binary expansion
        except InvalidOperation:
            raise ValueError(f"{name} must be a number, not {raw!r}") from None
        if not values[name].is_finite():
            raise ValueError(f"{name} must be a finite number")
    if "input" in values and "cached_input" not in values:
        # A new input price without a cached one keeps the default's cached fraction.
        ratio = base.cached_input / base.input if base.input else Decimal(0)
        values["cached_input"] = values["input"] * ratio
    return replace(base, **values)


DEFAULT_TABLE = PriceTable()


def exact_cost(price: ModelPrice, usage: Usage) -> Decimal:
    """A call's cost, unrounded: uncached input, cached input and output each at their price."""
    cached = min(max(usage.tokens_cached, 0), usage.tokens_in)
    return (
        price.input * (usage.tokens_in - cached) + price.cached_input * cached + price.output * usage.tokens_out
    ) / _MILLION


def cost_usd(model: str, usage: Usage, prices: PriceTable = DEFAULT_TABLE) -> Decimal:
    """The price of one call in units of 1e-8 USD (what is stored and summed; rounded once, here)."""
    return exact_cost(prices.price(model), usage).quantize(QUANTUM, rounding=ROUND_HALF_UP)


def to_cents(usd: Decimal) -> Decimal:
    """A total as money is shown (runs, teams): to the cent, half up. Only for display."""
    return usd.quantize(CENT, rounding=ROUND_HALF_UP)


def split_usage(total: Usage, input_weights: Sequence[int], output_weights: Sequence[int]) -> list[Usage]:
    """Share one call's tokens among its steps, in proportion to their prompt and answer sizes.

    Cached tokens are shared like the input they are part of (same weights), never more than a
    step's input share. The shares add up exactly to the call's totals.
    """
    ins = _apportion(total.tokens_in, input_weights)
    cached = _apportion(min(total.tokens_cached, total.tokens_in), input_weights)
    cached = _capped(cached, ins)
    outs = _apportion(total.tokens_out, output_weights)
    return [Usage(i, o, c) for i, o, c in zip(ins, outs, cached, strict=True)]


def split_cost(total: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """Share a call's cost (in 1e-8 units) in proportion to `weights` (each step's exact cost of
    its token shares), so the parts add up exactly to what the call cost."""
    units = int((total / QUANTUM).to_integral_value())
    scale = [int((max(w, Decimal(0)) / QUANTUM * 1000).to_integral_value()) for w in weights]
    return [Decimal(u) * QUANTUM for u in _apportion(units, scale)]


def _capped(cached: list[int], ins: list[int]) -> list[int]:
    """Move cached tokens off steps whose share exceeds their input share (rounding can do that)."""
    cached = list(cached)
    spill = 0
    for k, (c, i) in enumerate(zip(cached, ins, strict=True)):
        if c > i:
            spill += c - i
            cached[k] = i
    for k in range(len(cached)):
        take = min(spill, ins[k] - cached[k])
        cached[k] += take
        spill -= take
    return cached


def _apportion(total: int, weights: Sequence[int]) -> list[int]:
    if not weights:
        return []
    weights = [max(0, w) for w in weights]
    whole = sum(weights)
    if whole == 0:
        weights, whole = [1] * len(weights), len(weights)
    shares = [total * w // whole for w in weights]
    # Largest remainders get the leftover units, so the parts sum to the total.
    order = sorted(range(len(weights)), key=lambda k: (total * weights[k]) % whole, reverse=True)
    for k in order[: total - sum(shares)]:
        shares[k] += 1
    return shares
