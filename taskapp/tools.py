"""Tools agents may call: Python callables the deployer registers, each with a JSON Schema for
its arguments, a timeout and a retry policy.

Register with the decorator, in a module beside the workflow files (WORKFLOWS_PATH) or in
a package that names it in the `taskapp.tools` entry-point group::

    from taskapp.tools import tool


    @tool(
        args_schema={"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]},
        timeout_s=5,
        retries=1,
        on_error="feed_back",
    )
    def square(a: float) -> float:
        "Square a number."
        return a * a

The function gets the model's arguments as keyword arguments (checked against the schema
first) and returns anything JSON can hold; that result is what the agent sees next.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from taskapp.domain.agents import ToolSpec
from taskapp.domain.definitions.model import Name
from taskapp.domain.definitions.schemas import schema_problems

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "taskapp.tools"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    function: Callable[..., Any]


class ToolError(ValueError):
    """A tool that cannot be registered (bad name, bad schema, a second tool of that name)."""


_registry: dict[str, Tool] = {}
_entry_points_loaded = False


def tool(
    name: str | None = None,
    *,
    args_schema: dict[str, Any],
    description: str | None = None,
    timeout_s: float = 10.0,
    retries: int = 0,
    on_error: Literal["feed_back", "fail"] = "feed_back",
) -> Callable[[F], F]:
    """Register the decorated function as a tool (its docstring is the description by default)."""

    def register(function: F) -> F:
        tool_name = name or function.__name__
        _check(tool_name, args_schema, timeout_s, retries, on_error)
        spec = ToolSpec(
            name=tool_name,
            # The docstring as one line: it goes into the agent's system prompt.
            description=(description or " ".join((function.__doc__ or "").split()) or tool_name)[:500],
            args_schema=args_schema,
            timeout_s=float(timeout_s),
            retries=int(retries),
            on_error=on_error,
        )
        existing = _registry.get(tool_name)
        if (
            existing is not None
            and existing.function is not function
            and _origin(existing.function) != _origin(function)
        ):
            raise ToolError(f"a tool called {tool_name!r} is registered twice ({_origin(existing.function)})")
        _registry[tool_name] = Tool(spec, function)
        return function

    return register


def registered() -> dict[str, Tool]:
    """Every registered tool, the `taskapp.tools` entry points' included (loaded once)."""
    _load_entry_points()
    return dict(_registry)


def specs() -> dict[str, ToolSpec]:
    return {name: t.spec for name, t in registered().items()}


def get_tool(name: str) -> Tool | None:
    return registered().get(name)


def _check(name: str, args_schema: Any, timeout_s: float, retries: int, on_error: str) -> None:
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(Name).validate_python(name)
    except ValidationError:
        raise ToolError(f"tool name {name!r}: use lower-case letters, digits and _ (a letter first)") from None
    problems = schema_problems(args_schema, f"tool {name}: args_schema")
    if problems:
        raise ToolError("; ".join(f"{p.path}: {p.reason}" for p in problems))
    if not 0 < timeout_s <= 3600:
        raise ToolError(f"tool {name}: timeout_s must be more than 0 and at most 3600")
    if not 0 <= retries <= 10:
        raise ToolError(f"tool {name}: retries must be 0 to 10")
    if on_error not in ("feed_back", "fail"):
        raise ToolError(f"tool {name}: on_error is feed_back or fail")


def _origin(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry.load()  # importing the module runs its @tool decorators
        log.info("loaded tools from entry point %s", entry.value)
