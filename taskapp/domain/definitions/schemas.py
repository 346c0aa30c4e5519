"""JSON Schemas in definitions: checked to be valid, to be ones Gemini accepts, and used to validate.

Gemini's structured output (`responseJsonSchema`) takes a subset of JSON Schema. An agent's
output schema must stay inside it, or the call is refused (or a keyword silently ignored)
on the first run; here it is refused when the definition is stored. A few keywords Gemini
does not enforce while decoding (string lengths, patterns) are allowed because taskapp checks
every answer against the whole schema itself (a failing answer is repaired or fails its step).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema import exceptions as js_errors

# What Gemini's structured output accepts (its documentation's list for responseJsonSchema).
GEMINI_KEYWORDS = frozenset(
    {
        "type",
        "title",
        "description",
        "properties",
        "required",
        "additionalProperties",
        "enum",
        "format",
        "minimum",
        "maximum",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "anyOf",
        "oneOf",
        "$ref",
        "$defs",
        "$schema",
        "$id",
        "propertyOrdering",
        "nullable",
        "default",
    }
)
# Not enforced by Gemini's decoding, but checked by taskapp on every answer.
CHECKED_BY_TASKAPP = frozenset(
    {"minLength", "maxLength", "pattern", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "const", "uniqueItems"}
)
TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
MAX_SCHEMA_CHARS = 32_000
MAX_DEPTH = 12
_VALIDATOR = jsonschema.Draft202012Validator


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition: where (a dotted path inside it) and why."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def schema_problems(schema: Any, path: str) -> list[Problem]:
    """Why `schema` is not a valid JSON Schema (draft 2020-12); empty when it is."""
    if not isinstance(schema, dict):
        return [Problem(path, "must be a JSON Schema object")]
    try:
        _VALIDATOR.check_schema(schema)
    except js_errors.SchemaError as exc:
        where = ".".join([path, *map(str, exc.path)]) if exc.path else path
        return [Problem(where, f"not a valid JSON Schema: {exc.message}")]
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        return [Problem(path, f"longer than {MAX_SCHEMA_CHARS:,} characters as JSON")]
    return []


def gemini_problems(schema: dict[str, Any], path: str) -> list[Problem]:
    """Why Gemini would refuse (or silently ignore part of) this response schema; its root must be an object."""
    problems = schema_problems(schema, path)
    if problems:
        return problems
    if str(schema.get("type", "")).lower() != "object" or not isinstance(schema.get("properties"), dict):
        problems.append(Problem(path, "must be an object schema with properties (type: object)"))
    _walk(schema, path, 0, problems)
    return problems


def _walk(node: Any, path: str, depth: int, problems: list[Problem]) -> None:
    if not isinstance(node, dict):
        return
    if depth > MAX_DEPTH:
        problems.append(Problem(path, f"nested deeper than {MAX_DEPTH} levels, more than Gemini accepts"))
        return
    for key, value in node.items():
        here = f"{path}.{key}"
        if key not in GEMINI_KEYWORDS and key not in CHECKED_BY_TASKAPP:
            problems.append(Problem(here, f"Gemini's structured output does not accept the keyword {key!r}"))
            continue
        if key == "type":
            kinds = value if isinstance(value, list) else [value]
            bad = [k for k in kinds if str(k) not in TYPES]
            if bad:
                problems.append(Problem(here, f"unknown type {bad[0]!r}"))
        elif key == "enum" and any(not isinstance(v, (str, int, float)) or isinstance(v, bool) for v in value):
            problems.append(Problem(here, "Gemini accepts only strings and numbers in an enum"))
        elif key in ("properties", "$defs"):
            for name, sub in value.items():
                _walk(sub, f"{here}.{name}", depth + 1, problems)
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            _walk(value, here, depth + 1, problems)
        elif key in ("anyOf", "oneOf", "prefixItems"):
            for i, sub in enumerate(value):
                _walk(sub, f"{here}.{i}", depth + 1, problems)


def validation_errors(schema: dict[str, Any], value: Any, limit: int = 10) -> list[tuple[str, str]]:
    """Each way `value` fails `schema`: (dotted path inside the value, message), best first."""
    validator = _validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: (list(map(str, e.path)), e.message))
    return [(".".join(map(str, e.path)), _plain(e)) for e in errors[:limit]]


def _validator(schema: dict[str, Any]) -> Any:
    """One validator per schema object (agents' and workflows' schemas live as long as their
    definition; building a validator costs more than most validations)."""
    held = _validators.get(id(schema))
    if held is None or held[0] is not schema:
        if len(_validators) > 4096:
            _validators.clear()
        held = _validators[id(schema)] = (schema, _VALIDATOR(schema, format_checker=_VALIDATOR.FORMAT_CHECKER))
    return held[1]


_validators: dict[int, tuple[dict[str, Any], Any]] = {}


def _plain(error: js_errors.ValidationError) -> str:
    if error.validator == "minLength" and error.instance == "":
        return "must not be blank"
    if error.validator == "maxLength" and isinstance(error.instance, str):
        return f"is {len(error.instance):,} characters long; at most {error.validator_value:,} are allowed"
    return str(error.message)


def is_valid(schema: dict[str, Any], value: Any) -> bool:
    return not validation_errors(schema, value, limit=1)
