"""A run's input against its workflow's input schema: cleaned, defaulted, checked.

Text is kept without its surrounding whitespace (so `minLength` counts what a model reads,
and whitespace alone is blank), and the defaults of the schema's top-level properties are
filled in, so expressions read the value the form or API caller saw as the default.
"""

from __future__ import annotations

import copy
from typing import Any

from taskapp.domain.definitions.schemas import validation_errors


def input_errors(schema: dict[str, Any], payload: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(the cleaned input, each field at fault as {"field": dotted path, "message": why})."""
    if not isinstance(payload, dict):
        return {}, [{"field": "input", "message": "must be an object"}]
    clean = _stripped(payload)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in clean and isinstance(prop, dict) and "default" in prop:
            clean[name] = copy.deepcopy(prop["default"])
    errors = [{"field": path or "input", "message": message} for path, message in validation_errors(schema, clean)]
    return clean, errors


def _stripped(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {k: _stripped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stripped(v) for v in value]
    return value
