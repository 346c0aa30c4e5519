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


def plain_problem(field: FormField, raw: str) -> str | None:
    """What is wrong with a posted value, in words a person reads (None: nothing this form can tell)."""
    text = raw.strip()
    name = field.label
    if field.widget == "checkbox":
        return None
    if not text:
        return f"{name} cannot be blank: please fill it in." if field.required else None
    if "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return f"{name} contains a character that cannot be stored (a NUL, or half of an emoji); please remove it."
    if field.widget in ("text", "textarea"):
        if field.max_length is not None and len(text) > field.max_length:
            over = len(text) - field.max_length
            return (
                f"{name} can be at most {field.max_length:,} characters; this has {len(text):,}, "
                f"so shorten it by {over:,}."
            )
        if field.min_length is not None and len(text) < field.min_length:
            return f"{name} needs at least {field.min_length:,} characters; this has {len(text):,}."
    if field.widget == "number":
        whole = field.step == "1"
        try:
            number = int(text) if whole else float(text)
        except ValueError:
            return f"{name} must be {'a whole number' if whole else 'a number'}."
        low, high = field.minimum, field.maximum
        if (low is not None and number < low) or (high is not None and number > high):
            if low is not None and high is not None:
                return f"{name} must be from {_num(low)} to {_num(high)}."
            return (
                f"{name} must be at least {_num(low)}." if low is not None else f"{name} must be at most {_num(high)}."
            )
    if field.widget == "select" and text not in field.options:
        return f"Choose one of the listed values for {name}."
    if field.widget == "json":
        try:
            json.loads(text)
        except ValueError:
            return f'{name} must be JSON (for example ["a", "b"] or {{"key": 1}}).'
    return None


def _num(value: float | None) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def field_errors(
    fields: list[FormField], form: Mapping[str, str], details: list[dict[str, str]]
) -> tuple[dict[str, str], list[str]]:
    """A refusal of the posted form as (a message per field name, messages for the whole form).

    Each field's message is this form's own check of what was posted; a problem only the
    schema check found (a pattern, a format) is said with its field's label."""
    by_name = {f.name: f for f in fields}
    mine = {f.name: p for f in fields if (p := plain_problem(f, form.get(f.name, ""))) is not None}
    general: list[str] = []
    for detail in details:
        name = detail.get("field", "").removeprefix("input.").split(".")[0]
        if name in mine:
            continue
        if name in by_name:
            mine[name] = f"{by_name[name].label} is not accepted: {detail.get('message', 'invalid')}."
        elif name in ("input", ""):
            continue  # a required field left out: the blank check above says so
        else:
            general.append(f"{detail.get('field')}: {detail.get('message')}")
    if not mine and not general:
        general.append("The form could not be submitted; check the fields and try again.")
    return mine, general
