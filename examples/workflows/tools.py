"""The support workflow's tools: a lookup over the small order book shipped beside it (data/orders.json)
and a refund calculator. Both need nothing from outside this machine.

Loaded with the definitions (WORKFLOWS_PATH imports every *.py of the directory first), so
`support.yaml` may name them. What a tool returns is what the agent sees next, in its
input's `tool_results`; what it raises is fed back to the agent as an error (on_error).
"""

from __future__ import annotations

import json
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from taskapp.tools import tool

ORDER_BOOK = Path(__file__).parent / "data" / "orders.json"
ORDERS: dict[str, dict[str, Any]] = json.loads(ORDER_BOOK.read_text(encoding="utf-8"))
# The order book's "today", so the example's answers never change with the calendar.
TODAY = date(2026, 12, 1)
RETURN_WINDOW_DAYS = 30
RESTOCKING_FEE = Decimal("0.15")
LATE_CREDIT = Decimal("0.10")

ORDER_ID = {"type": "string", "description": "The order number, e.g. A-1001"}


def _order(order_id: str) -> dict[str, Any]:
    order = ORDERS.get(order_id.strip().upper())
    if order is None:
        raise LookupError(f"there is no order {order_id!r}")
    return order


def _cents(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@tool(
    args_schema={"type": "object", "properties": {"order_id": ORDER_ID}, "required": ["order_id"]},
    timeout_s=5,
    retries=1,
    on_error="feed_back",
)
def lookup_order(order_id: str) -> dict[str, Any]:
    """Look up an order: its status, dates, items, shipping cost and what was refunded already."""
    order = _order(order_id)
    return {"order_id": order_id.strip().upper(), **order}


@tool(
    args_schema={
        "type": "object",
        "properties": {
            "order_id": ORDER_ID,
            "reason": {
                "type": "string",
                "enum": ["damaged", "late", "unwanted"],
                "description": "damaged: the goods arrived broken; late: delivered late; unwanted: a return",
            },
        },
        "required": ["order_id", "reason"],
    },
    timeout_s=5,
    on_error="feed_back",
)
def refund_quote(order_id: str, reason: str) -> dict[str, Any]:
    """What the refund policy grants for an order: damaged goods in full with shipping, a late delivery
    10% and the shipping, an unwanted item within 30 days of delivery less a 15% restocking fee."""
    order = _order(order_id)
    goods = sum((Decimal(str(i["unit_price"])) * i["quantity"] for i in order["items"]), Decimal(0))
    shipping = Decimal(str(order["shipping"]))
    refunded = Decimal(str(order["refunded"]))
    if order["status"] == "cancelled":
        return {"eligible": False, "amount": 0.0, "why": "the order was cancelled and refunded already"}
    if reason == "damaged":
        amount, why = goods + shipping, "damaged goods: the goods and the shipping"
    elif reason == "late":
        amount, why = goods * LATE_CREDIT + shipping, "late delivery: 10% of the goods and the shipping"
    else:
        if order["delivered"] is None:
            return {"eligible": False, "amount": 0.0, "why": "not delivered yet: cancel the order instead"}
        days = (TODAY - date.fromisoformat(order["delivered"])).days
        if days > RETURN_WINDOW_DAYS:
            return {"eligible": False, "amount": 0.0, "why": f"delivered {days} days ago, past the 30-day window"}
        amount, why = goods * (1 - RESTOCKING_FEE), "a return within 30 days, less the 15% restocking fee"
    amount = max(Decimal(0), amount - refunded)
    return {"eligible": amount > 0, "amount": _cents(amount), "already_refunded": _cents(refunded), "why": why}
