"""The expression language of definitions: JMESPath, evaluated and checked against schemas.

JMESPath is a query language, not code: an expression can only read the data it is given
(`input`, `outputs`, `loops`, `visits`, and `item`/`index` inside a fan-out), so a team's
definition can never run anything on a worker. `schema_of` walks an expression's syntax tree
against the JSON Schemas of what it reads, so a reference to a field that cannot exist
(a stage that is not there, a property no schema declares, a field of a list) is found when
the definition is stored, not when a run reaches it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath import exceptions as jp_errors
from jmespath import functions as jp_functions

from taskapp.domain.tokens import trim_to_budget

ANY: dict[str, Any] = {}


class ExpressionError(ValueError):
    """An expression that does not parse, or reads what cannot exist; `str()` says what and where."""


class _Functions(jp_functions.Functions):  # type: ignore[misc]
    """JMESPath's built-ins plus one: `fit_tokens(list_of_strings, tokens)`."""

    @jp_functions.signature({"types": ["array", "null"]}, {"types": ["number"]})  # type: ignore[untyped-decorator]
    def _func_fit_tokens(self, parts: list[Any] | None, tokens: float) -> list[str]:
        """Shorten texts to share a token budget fairly; each cut text ends with a visible mark."""
        return trim_to_budget([p if isinstance(p, str) else str(p) for p in parts or []], int(tokens))


_OPTIONS = jmespath.Options(custom_functions=_Functions())
FUNCTIONS = frozenset(
    name[len("_func_") :] for name in dir(_Functions) if name.startswith("_func_")
)  # what `schema_of` accepts as a function name


@functools.lru_cache(maxsize=4096)
def compile_expression(text: str) -> Any:
    try:
        return jmespath.compile(text)
    except jp_errors.JMESPathError as exc:
        raise ExpressionError(f"not a valid JMESPath expression: {_first_line(exc)}") from None


def evaluate(text: str, context: dict[str, Any]) -> Any:
    """The expression's value over `context`; ExpressionError when it cannot be computed
    (a function given the wrong type, say: the run then fails with this message)."""
    try:
        return compile_expression(text).search(context, options=_OPTIONS)
    except jp_errors.JMESPathError as exc:
        raise ExpressionError(_first_line(exc)) from None


def truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, empty strings, lists and objects are false."""
    return value not in (None, False, "", [], {})


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# -- checking against schemas ---------------------------------------------------------------


@dataclass(frozen=True)
class _Val:
    """What an expression gives, as far as the schemas say: a schema (ANY when unknown) and its text."""

    schema: dict[str, Any]
    text: str


def schema_of(text: str, context_schema: dict[str, Any]) -> dict[str, Any]:
    """What the expression gives, as a schema (ANY where the schemas cannot say); ExpressionError
    when it does not parse or reads a field that cannot exist."""
    tree = compile_expression(text).parsed
    return _Checker(context_schema).value(tree, _Val(context_schema, "")).schema


class _Checker:
    def __init__(self, root: dict[str, Any]) -> None:
        self.defs = {**root.get("$defs", {}), **root.get("definitions", {})}

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            ref = str(schema["$ref"])
            name = ref.rsplit("/", 1)[-1]
            if not ref.startswith("#/") or name not in self.defs:
                return ANY
            schema, seen = self.defs[name], seen + 1
        return schema if isinstance(schema, dict) else ANY

    def options(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        schema = self.resolve(schema)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return [o for s in schema[key] for o in self.options(s)]
        return [schema]

    def field(self, current: _Val, name: str) -> _Val:
        where = f"{current.text}.{name}" if current.text else name
        found: list[dict[str, Any]] = []
        reasons: list[str] = []
        for option in self.options(current.schema):
            kind = _kind(option)
            if option == ANY or kind is None and "properties" not in option:
                return _Val(ANY, where)
            if kind == "null":
                continue
            if kind not in ("object", None):
                hint = "; take a field of each item with [*]." + name if kind == "array" else ""
                if current.text.startswith("!"):
                    hint = "; '!' binds tighter than '.': write !(a.b) to negate a field"
                reasons.append(f"{current.text or 'it'} is {_a(kind)}, which has no field {name!r}{hint}")
                continue
            props = option.get("properties") or {}
            if name in props:
                found.append(props[name])
            elif option.get("additionalProperties") not in (None, False) or "properties" not in option:
                extra = option.get("additionalProperties")
                found.append(extra if isinstance(extra, dict) else ANY)
            else:
                known = ", ".join(sorted(props)) or "none"
                reasons.append(f"{current.text or 'the context'} has no field {name!r} (its fields: {known})")
        if found:
            return _Val(found[0] if len(found) == 1 else {"anyOf": found}, where)
        raise ExpressionError(reasons[0] if reasons else f"{where} cannot exist")

    def element(self, current: _Val) -> _Val:
        for option in self.options(current.schema):
            kind = _kind(option)
            if option == ANY or kind is None:
                return _Val(ANY, f"{current.text}[]")
            if kind == "array":
                return _Val(self.resolve(option.get("items") or ANY), f"{current.text}[]")
        raise ExpressionError(f"{current.text} is not a list, so it has no items")

    def value(self, node: dict[str, Any], current: _Val) -> _Val:
        kind = node["type"]
        children = node.get("children", [])
        if kind == "field":
            return self.field(current, node["value"])
        if kind == "subexpression":
            for child in children:
                current = self.value(child, current)
            return current
        if kind == "index_expression":
            left = self.value(children[0], current)
            return self.element(left)
        if kind in ("index", "slice"):
            return self.element(current) if kind == "index" else current
        if kind == "projection":
            left = self.value(children[0], current)
            item = self.element(left) if children[0]["type"] != "flatten" else _Val(ANY, left.text)
            right = self.value(children[1], item)
            return _Val({"type": "array", "items": right.schema}, right.text)
        if kind == "filter_projection":
            left = self.value(children[0], current)
            item = self.element(left)
            self.value(children[2], item)
            right = self.value(children[1], item)
            return _Val({"type": "array", "items": right.schema}, right.text)
        if kind in ("value_projection", "flatten"):
            self.value(children[0], current)
            return _Val({"type": "array"}, current.text)
        if kind == "multi_select_dict":
            props = {pair["value"]: self.value(pair["children"][0], current).schema for pair in children}
            return _Val({"type": "object", "properties": props}, "{...}")
        if kind == "multi_select_list":
            for child in children:
                self.value(child, current)
            return _Val({"type": "array"}, "[...]")
        if kind == "function_expression":
            if node["value"] not in FUNCTIONS:
                raise ExpressionError(f"unknown function {node['value']}()")
            for child in children:
                if child["type"] != "expref":
                    self.value(child, current)
            return _Val(ANY, f"{node['value']}(...)")
        if kind in ("comparator", "and_expression", "or_expression"):
            results = [self.value(child, current) for child in children]
            if kind == "or_expression":
                return _Val({"anyOf": [r.schema for r in results]}, results[0].text)
            return _Val({"type": "boolean"} if kind == "comparator" else ANY, current.text)
        if kind == "not_expression":
            inner = self.value(children[0], current)
            return _Val({"type": "boolean"}, f"!{inner.text}")
        if kind == "pipe":
            left = self.value(children[0], current)
            return self.value(children[1], left)
        if kind == "literal":
            return _Val(_literal_schema(node["value"]), "`literal`")
        if kind in ("current", "identity"):
            return current
        return _Val(ANY, current.text)  # expref and anything newer: not checked


def _kind(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [str(k).lower() for k in kind if str(k).lower() != "null"]
        return kinds[0] if len(kinds) == 1 else None
    return str(kind).lower() if kind else None


def _a(kind: str) -> str:
    return {"array": "a list", "object": "an object", "integer": "an integer"}.get(kind, f"a {kind}")


def _literal_schema(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, (int, float)):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array"}
    return ANY
