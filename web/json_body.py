"""Request bodies parsed as strict JSON, in one place for every view.

Python's parser accepts `NaN`, `Infinity` and `1e999` (a float overflowing to inf),
which PostgreSQL's jsonb then refuses, and it recurses once per nesting level, so a
body nested a few thousand levels deep raised RecursionError. Both are a 400 here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, NoReturn

from flask import Request
from flask.json.provider import DefaultJSONProvider

from web.errors import ApiError

MAX_DEPTH = 32  # a run request nests 3 or 4 levels; far more is a mistake or an attack


class InvalidJSON(ValueError):
    """A body that is JSON to Python's parser but not to this API."""


def _no_constant(name: str) -> NoReturn:
    raise InvalidJSON(f"numbers must be finite: {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"numbers must be finite: {text} is out of range")
    return value


def depth_over(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` deep (iterative: a deep value cannot recurse us)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing non-finite numbers and nesting deeper than MAX_DEPTH."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        kwargs.setdefault("parse_constant", _no_constant)
        kwargs.setdefault("parse_float", _finite_float)
        too_deep = InvalidJSON(f"JSON is nested more than {MAX_DEPTH} levels deep")
        try:
            value = json.loads(s, **kwargs)
        except RecursionError:
            raise too_deep from None
        if depth_over(value, MAX_DEPTH):
            raise too_deep
        return value


class JSONRequest(Request):
    """`request.get_json()` failures in the API's error shape, saying what is wrong."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            raise ApiError(400, "invalid_json", "the body must be JSON, sent with Content-Type: application/json")
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {e}")
