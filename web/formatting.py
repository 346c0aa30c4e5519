"""Numbers as the pages show them (static/ui.js formats the same way for what it redraws)."""

from __future__ import annotations

from decimal import Decimal

from flask import Flask

from taskapp.domain.pricing import QUANTUM, to_cents


def duration_text(ms: int | float | None) -> str:
    """`840 ms`, `4.2 s`, `3 min 05 s`, `2 h 04 min`; an empty string for no value."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{int(ms)} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def money(usd: float | None) -> str:
    """Dollars with enough places to tell small runs apart: `$0.000412`, `$0.0312`, `$1.25`."""
    if usd is None:
        return ""
    if usd == 0:
        return "$0"
    if usd < 0.01:
        return f"${usd:.6f}"
    if usd < 1:
        return f"${usd:.4f}"
    return f"${usd:,.2f}"


def money_total(usd: Decimal | float | None) -> str:
    """A run's or a team's total as money: to the cent, half up (`$0.00`, `$1,234.57`); the exact
    amount is `money_exact` (a call's or step's cost keeps `money`'s places)."""
    if usd is None:
        return ""
    return f"${to_cents(Decimal(str(usd))):,.2f}"


def money_exact(usd: Decimal | float | None) -> str:
    """The amount as it was summed, to 1e-8 dollars (`$0.00041200`), for a title beside a total."""
    if usd is None:
        return ""
    return f"${Decimal(str(usd)).quantize(QUANTUM):,f}"


def register(app: Flask) -> None:
    app.jinja_env.filters["duration"] = duration_text
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["money_total"] = money_total
    app.jinja_env.filters["money_exact"] = money_exact
