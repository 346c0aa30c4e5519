"""Answers that are valid against a requested response schema, for the Gemini simulator.

Generic: the schema alone shapes an answer, and the task's input flavours it; nothing here
knows any particular agent. Understands both spellings the SDK sends: `responseSchema`
(OpenAPI subset, upper-case types) and `responseJsonSchema` (JSON Schema, lower-case types,
$defs/$ref). An array of objects that carry a `step_id` gets one item per task in the prompt,
so batched prompts are answered the way Gemini answers them: one answer per id, each about
its own task. Deterministic: the same prompt gets the same answer.

The tool protocol (taskapp.domain.prompts): when an answer item may hold either an `output`
or `tool_calls`, a task whose input has no `tool_results` yet asks for one tool call (a
seeded choice among the tools the schema offers, its arguments faked from that tool's
argument schema); a task that has its results answers with its output.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

_TASKS = re.compile(r"TASKS:\s*(\[.*?\])\s*(?:\n\n|$)", re.S)
_STEP_ID = re.compile(r'"step_id"\s*:\s*"([^"]+)"')
TOOL_CALLS, TOOL_RESULTS, OUTPUT = "tool_calls", "tool_results", "output"
_SPACE = re.compile(r"\s")
ID_CHARS = 64
TOPIC_PART_CHARS = 48
TOPIC_CHARS = 120


@dataclass
class FakeContext:
    prompt: str
    tasks: list[dict[str, Any]] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    task: dict[str, Any] | None = None

    @classmethod
    def from_prompt(cls, prompt: str) -> FakeContext:
        seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
        tasks: list[dict[str, Any]] = []
        match = _TASKS.search(prompt)
        if match:
            try:
                parsed = json.loads(match.group(1))
                tasks = [t for t in parsed if isinstance(t, dict) and "step_id" in t]
            except ValueError:
                tasks = []
        if not tasks:
            tasks = [{"step_id": sid, "input": {}} for sid in _STEP_ID.findall(prompt)]
        return cls(prompt=prompt, tasks=tasks, rng=random.Random(seed))

    @property
    def task_input(self) -> dict[str, Any]:
        source = self.task.get("input") if self.task else None
        return source if isinstance(source, dict) else {}

    def topic(self) -> str:
        """What the task is about: the start of each text field of its input, in order (so every
        task's answer carries something of its own input), else the start of the prompt."""
        parts = [
            " ".join(value.split())[:TOPIC_PART_CHARS]
            for key, value in self.task_input.items()
            if isinstance(value, str) and value.strip() and key != TOOL_RESULTS
        ]
        return " / ".join(parts)[:TOPIC_CHARS] if parts else " ".join(self.prompt.split())[:60]

    def given(self, name: str) -> str | None:
        """The task's own value for a field of this name when it is an identifier (one word, short:
        an order number, a SKU), as a model copies it into its answer or a tool call's arguments."""
        value = self.task_input.get(name) if name else None
        if isinstance(value, str) and value.strip() and len(value) <= ID_CHARS and not _SPACE.search(value.strip()):
            return value
        return None


def fake_value(schema: dict[str, Any], ctx: FakeContext, name: str = "", defs: dict | None = None) -> Any:
    """A value matching `schema`, plausible for a field called `name`."""
    defs = defs if defs is not None else {**schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return fake_value(_resolve(schema, defs), ctx, name, defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if str(s.get("type", "")).lower() != "null"] or schema[key]
            return fake_value(ctx.rng.choice(options), ctx, name, defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return ctx.rng.choice(schema["enum"])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "string")
    kind = str(kind).lower()
    if kind == "object":
        props = schema.get("properties", {})
        return {key: fake_value(sub, ctx, key, defs) for key, sub in props.items()}
    if kind == "array":
        return _fake_array(schema, ctx, name, defs)
    if kind == "string":
        return _fake_string(schema, ctx, name)
    if kind == "boolean":
        return ctx.rng.random() < 0.5
    if kind == "integer":
        return ctx.rng.randint(int(schema.get("minimum", 0)), int(schema.get("maximum", 100)))
    if kind == "number":
        return round(ctx.rng.uniform(float(schema.get("minimum", 0)), float(schema.get("maximum", 1))), 3)
    return None


def _resolve(schema: dict[str, Any], defs: dict) -> dict[str, Any]:
    return defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}) if "$ref" in schema else schema


def _fake_array(schema: dict[str, Any], ctx: FakeContext, name: str, defs: dict) -> list[Any]:
    items = schema.get("items", {"type": "string"})
    resolved = _resolve(items, defs)
    if "step_id" in resolved.get("properties", {}):
        return _answers(resolved, ctx, name, defs)
    low = int(schema.get("minItems", schema.get("min_items", 1)))
    high = int(schema.get("maxItems", schema.get("max_items", 3)))
    count = max(low, min(high, ctx.rng.randint(2, 3)))
    return [fake_value(items, ctx, _singular(name), defs) for _ in range(count)]


def _answers(item: dict[str, Any], ctx: FakeContext, name: str, defs: dict) -> list[dict[str, Any]]:
    """One answer per task of the prompt, each made while that task is the context."""
    props = item.get("properties", {})
    out = []
    for task in ctx.tasks:
        ctx.task = task
        if TOOL_CALLS in props and OUTPUT in props:
            # One of the two, as the protocol asks: tools first, the output once their results are in.
            if TOOL_RESULTS in ctx.task_input:
                value = {OUTPUT: fake_value(props[OUTPUT], ctx, OUTPUT, defs)}
            else:
                calls = _resolve(props[TOOL_CALLS], defs)
                value = {TOOL_CALLS: [fake_value(calls.get("items", {}), ctx, TOOL_CALLS, defs)]}
        else:
            value = fake_value(item, ctx, name, defs)
        value["step_id"] = task["step_id"]
        out.append(value)
    ctx.task = None
    return out


def _fake_string(schema: dict[str, Any], ctx: FakeContext, name: str) -> str:
    text = ctx.given(name) or _string_like(schema, ctx, name)
    minimum = int(schema.get("minLength", schema.get("min_length", 0)))
    if len(text) < minimum:
        text = text + " " + "x" * (minimum - len(text))
    maximum = schema.get("maxLength", schema.get("max_length"))
    return text[: int(maximum)] if maximum is not None else text


def _string_like(schema: dict[str, Any], ctx: FakeContext, name: str) -> str:
    n = ctx.rng.randint(1, 999)
    fmt = str(schema.get("format", "")).lower()
    words = name.replace("_", " ").strip() or "text"
    if fmt in ("uri", "url") or words.split()[-1] in ("url", "uri", "link", "source"):
        return f"https://example.org/{name or 'page'}/{n}"
    if fmt == "email":
        return f"{name or 'someone'}.{n}@example.org"
    if fmt == "date":
        return f"2026-{ctx.rng.randint(1, 12):02d}-{ctx.rng.randint(1, 28):02d}"
    if fmt == "date-time":
        return f"2026-{ctx.rng.randint(1, 12):02d}-{ctx.rng.randint(1, 28):02d}T12:00:00Z"
    return f"{words[:1].upper()}{words[1:]} on '{ctx.topic()}' (#{n})."


def _singular(name: str) -> str:
    """The name an item of an array field is faked as: `sources` -> `source`."""
    if name.endswith("ies") and len(name) > 4:
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss") and len(name) > 3:
        return name[:-1]
    return name
