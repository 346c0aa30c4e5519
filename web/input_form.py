"""The new-run form, built from a workflow version's input schema (JSON Schema), and read back.

Each top-level property is one field: a string is a text input (a textarea when it may be
long), an enum a select, an integer or number a number input with its bounds, a boolean a
checkbox, anything else (lists, objects) a textarea of JSON. Labels are the `title` (else
the name), hints the `description`, values the `default`. What the form sends back is typed
again here; the schema itself is checked at submit time, with the API's own checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

LONG_TEXT = 200  # a string allowed longer than this gets a textarea
Widget = Literal["text", "textarea", "number", "checkbox", "select", "json"]


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    widget: Widget
    required: bool
    description: str = ""
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    step: str | None = None  # "1" for integers, "any" for numbers
    max_length: int | None = None
    min_length: int | None = None
    options: tuple[str, ...] = ()  # a select's values, as the form sends them

    def shown(self, values: Mapping[str, str]) -> str:
        """The value to show: what was posted, else the default (JSON for the json widget)."""
        if self.name in values:
            return values[self.name]
        if self.default is None:
            return ""
        if self.widget == "json":
            return json.dumps(self.default)
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    def checked(self, values: Mapping[str, str], posted: bool) -> bool:
        """A checkbox: ticked as posted, else as its default."""
        return self.name in values if posted else self.default is True


def form_fields(schema: Mapping[str, Any]) -> list[FormField]:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    return [_field(name, spec if isinstance(spec, dict) else {}, name in required) for name, spec in properties.items()]


def read_form(schema: Mapping[str, Any], form: Mapping[str, str]) -> dict[str, Any]:
    """The posted fields as the JSON values the schema expects (a value that does not convert is
    passed on as the text it was, for the schema check to name)."""
    out: dict[str, Any] = {}
    for field in form_fields(schema):
        if field.widget == "checkbox":
            out[field.name] = field.name in form
            continue
        raw = form.get(field.name, "")
        if raw == "":
            continue
        out[field.name] = _typed(field, raw, (schema.get("properties") or {}).get(field.name) or {})
    return out


def _field(name: str, spec: dict[str, Any], required: bool) -> FormField:
    kind = _type_of(spec)
    common: dict[str, Any] = {
        "name": name,
        "label": str(spec.get("title") or name),
        "required": required,
        "description": str(spec.get("description") or ""),
        "default": spec.get("default"),
    }
    if isinstance(spec.get("enum"), list):
        return FormField(widget="select", options=tuple(_option(v) for v in spec["enum"]), **common)
    if kind in ("integer", "number"):
        return FormField(
            widget="number",
            minimum=_number(spec.get("minimum")),
            maximum=_number(spec.get("maximum")),
            step="1" if kind == "integer" else "any",
            **common,
        )
    if kind == "boolean":
        return FormField(widget="checkbox", **common)
    if kind == "string":
        max_length = spec.get("maxLength") if isinstance(spec.get("maxLength"), int) else None
        min_length = spec.get("minLength") if isinstance(spec.get("minLength"), int) else None
        long = max_length is None or max_length > LONG_TEXT
        return FormField(widget="textarea" if long else "text", max_length=max_length, min_length=min_length, **common)
    return FormField(widget="json", **common)


def _type_of(spec: dict[str, Any]) -> str | None:
    kind = spec.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the one that is not null
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else None


def _option(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _typed(field: FormField, raw: str, spec: dict[str, Any]) -> Any:
    if field.widget == "select":
        return next((v for v in spec.get("enum", []) if _option(v) == raw), raw)
    if field.widget == "number":
        try:
            number = int(raw) if field.step == "1" else float(raw)
        except ValueError:
            return raw
        return number if math.isfinite(number) else raw
    if field.widget == "json":
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw
