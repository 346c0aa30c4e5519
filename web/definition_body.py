"""A workflow definition sent as a request body: JSON, or YAML (`Content-Type: application/yaml`).

JSON goes through the API's strict parser (web.json_body). YAML is read with PyYAML's safe
loader, less what JSON cannot hold: anchors and aliases (a few lines of them expand to
gigabytes once walked: the "billion laughs"), tags, and values a definition never has
(dates, binary, non-finite numbers, keys that are not strings), each a 400 that says where.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from flask import request

from web.errors import ApiError
from web.json_body import MAX_DEPTH, depth_over

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing aliases (and so the documents that expand without bound)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (*name) are not accepted in a definition", event.start_mark
            )
        return super().compose_node(parent, index)


# Timestamps stay the text they were written as (a definition's default: 2024-01-01 is a string).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_definition() -> Any:
    """The request's definition document (any JSON value; the checks say what is wrong with it)."""
    if request.mimetype in YAML_TYPES:
        return _yaml(request.get_data(as_text=True))
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the definition as JSON (Content-Type: application/json) or YAML (application/yaml)",
        )
    return request.get_json()


def _yaml(text: str) -> Any:
    try:
        document = yaml.load(text, Loader=_Loader)  # a SafeLoader, stricter still
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ApiError(400, "invalid_yaml", f"request body is not valid YAML{where}: {problem}") from None
    if depth_over(document, MAX_DEPTH):
        raise ApiError(400, "invalid_yaml", f"YAML is nested more than {MAX_DEPTH} levels deep")
    found = _not_json(document)
    if found is not None:
        path, what = found
        raise ApiError(400, "invalid_yaml", f"{path or 'the document'}: {what} has no place in a definition")
    return document


def _not_json(value: Any) -> tuple[str, str] | None:
    """Where a value JSON cannot hold sits (its path and what it is), or None."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return path, f"a key that is not a string ({key!r})"
                stack.append((child, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((child, f"{path}.{i}" if path else str(i)) for i, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            return path, f"a number that is not finite ({item})"
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            return path, f"a {type(item).__name__} value"
    return None
