"""Answers that are valid against a requested response schema, for the Gemini simulator.

Understands both spellings the SDK sends: `responseSchema` (OpenAPI subset, upper-case
types) and `responseJsonSchema` (JSON Schema with $defs/$ref). An array of objects that
carry a `step_id` gets one item per task in the prompt, so batched prompts are answered
the way Gemini answers them: one answer per id, each about its own task.
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

    def topic(self) -> str:
        source = self.task.get("input") if self.task else None
        if isinstance(source, dict):
            for key in ("sub_question", "question", "text", "draft"):
                if isinstance(source.get(key), str) and source[key].strip():
                    return " ".join(source[key].split())[:80]
        return " ".join(self.prompt.split())[:60]


def fake_value(schema: dict[str, Any], ctx: FakeContext, name: str = "", defs: dict | None = None) -> Any:
    """A value matching `schema`, plausible for a field called `name`."""
    defs = defs if defs is not None else {**schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return fake_value(defs[schema["$ref"].rsplit("/", 1)[-1]], ctx, name, defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if str(s.get("type", "")).lower() != "null"] or schema[key]
            return fake_value(options[0], ctx, name, defs)
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
        return ctx.rng.random() < (0.6 if name == "approved" else 0.5)
    if kind == "integer":
        return ctx.rng.randint(int(schema.get("minimum", 0)), int(schema.get("maximum", 100)))
    if kind == "number":
        return round(ctx.rng.uniform(float(schema.get("minimum", 0)), float(schema.get("maximum", 1))), 3)
    return None


def _fake_array(schema: dict[str, Any], ctx: FakeContext, name: str, defs: dict) -> list[Any]:
    items = schema.get("items", {"type": "string"})
    resolved = defs.get(items["$ref"].rsplit("/", 1)[-1], items) if "$ref" in items else items
    if "step_id" in resolved.get("properties", {}):
        out = []
        for task in ctx.tasks:
            ctx.task = task
            value = fake_value(resolved, ctx, name, defs)
            value["step_id"] = task["step_id"]
            out.append(value)
        ctx.task = None
        return out
    low = int(schema.get("minItems", schema.get("min_items", 2 if name == "sub_questions" else 1)))
    high = int(schema.get("maxItems", schema.get("max_items", 3)))
    count = max(low, min(high, ctx.rng.randint(2, 3)))
    return [fake_value(items, ctx, _singular(name), defs) for _ in range(count)]


def _fake_string(schema: dict[str, Any], ctx: FakeContext, name: str) -> str:
    topic = ctx.topic()
    n = ctx.rng.randint(1, 999)
    texts = {
        "sub_question": f"What is aspect {n} of: {topic}?",
        "findings": f"Findings on '{topic}': three relevant facts were established (#{n}).",
        "source": f"https://example.org/source/{n}",
        "title": f"On {topic[:50]}",
        "draft": f"A structured answer to '{topic}', drawing on the research findings (draft {n}).",
        "feedback": f"Tighten the argument and cite a source for claim {n}.",
        "summary": f"A two-sentence summary of '{topic[:50]}'. It covers the main points.",
        "keyword": f"keyword-{n}",
    }
    text = texts.get(name) or f"Simulated {name or 'text'} about '{topic}'."
    minimum = int(schema.get("minLength", schema.get("min_length", 0)))
    if len(text) < minimum:
        text = text + " " + "x" * (minimum - len(text))
    maximum = schema.get("maxLength", schema.get("max_length"))
    return text[: int(maximum)] if maximum is not None else text


def _singular(name: str) -> str:
    return {"sub_questions": "sub_question", "sources": "source", "keywords": "keyword"}.get(name, name)
