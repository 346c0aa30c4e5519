"""One prompt for many steps, and the answers taken apart again.

The batched prompt carries every step with its id and asks for structured output
holding one answer per id. Parsing checks each answer on its own, so a missing or
malformed answer fails (or is retried for) that step alone, never the batch.

Layout, for Gemini's implicit prompt cache (which bills a repeated request prefix at the
cached-input price): everything shared by an agent's batches comes first and is the same
byte for byte in each of them: the system instruction (system prompt, batch rules, tool
list) and the response schema, built from the agent's definition alone (no step ids, times
or counts). The per-step part, the tasks with their ids (and a repair's complaint, last),
is the user turn after it. tests/unit/test_pricing.py holds this.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from taskapp.domain.agents import Agent
from taskapp.domain.definitions.checks import RESERVED_OUTPUT_FIELD as TOOL_CALLS
from taskapp.domain.definitions.schemas import validation_errors
from taskapp.domain.tokens import estimate_tokens

TOOL_RULES = (
    "You may call tools. For a task that needs them, answer with "
    '{"step_id": ..., "tool_calls": [{"tool": <name>, "arguments": {...}}]} instead of an output; '
    "you will get the task again with their results in its input's tool_results. When a task's "
    "tool_results are enough, answer with its output. The tools:"
)
BATCH_RULES = (
    "You receive a JSON list of tasks, each with a step_id and an input. Handle each task "
    'independently. Reply with JSON: {"answers": [{"step_id": <the task\'s step_id>, '
    '"output": <your answer>}]}, exactly one answer per step_id, copying each step_id verbatim.'
)


MAX_TOOL_CALLS = 8  # per answer: each is a step of its own


def batch_schema(agent: Agent) -> dict[str, Any]:
    """The response schema (JSON Schema, sent as responseJsonSchema) for a batch of this agent's
    steps: one answer per step id, each its output or, for an agent with tools, tool calls."""
    cached = _schemas.get(agent.id)
    if cached is None:
        cached = _schemas[agent.id] = _batch_schema(agent)
    return copy.deepcopy(cached)  # the SDK may edit what it is given


_schemas: dict[str, dict[str, Any]] = {}


def _batch_schema(agent: Agent) -> dict[str, Any]:
    output = {k: v for k, v in agent.output_schema.items() if k not in ("$defs", "definitions", "$schema", "$id")}
    defs = {**agent.output_schema.get("definitions", {}), **agent.output_schema.get("$defs", {})}
    answer: dict[str, Any] = {
        "type": "object",
        "properties": {"step_id": {"type": "string"}, "output": output},
        "required": ["step_id", "output"],
    }
    if agent.tools:
        calls = [
            {
                "type": "object",
                "properties": {"tool": {"type": "string", "enum": [t.name]}, "arguments": t.args_schema},
                "required": ["tool", "arguments"],
            }
            for t in agent.tools
        ]
        answer["properties"]["tool_calls"] = {
            "type": "array",
            "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
            "maxItems": MAX_TOOL_CALLS,
        }
        answer["required"] = ["step_id"]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"answers": {"type": "array", "items": answer}},
        "required": ["answers"],
    }
    if defs:
        schema["$defs"] = defs
    return schema


def system_instruction(agent: Agent) -> str:
    """The agent's shared prefix: only what its definition says, so every batch's is identical."""
    text = f"{agent.system_prompt}\n\n{BATCH_RULES}"
    if agent.tools:
        listed = "\n".join(
            f"- {t.name}: {t.description} Arguments (JSON Schema): {json.dumps(t.args_schema, separators=(',', ':'))}"
            for t in agent.tools
        )
        text += f"\n\n{TOOL_RULES}\n{listed}"
    return text


def build_prompt(items: list[tuple[str, dict[str, Any]]], repair: str | None = None) -> str:
    """The user turn: the tasks as JSON; `repair` explains what was wrong last time."""
    tasks = [{"step_id": step_id, "input": payload} for step_id, payload in items]
    text = "TASKS:\n" + json.dumps(tasks, ensure_ascii=False, indent=1)
    if repair:
        text += f"\n\nYour previous answer was rejected: {repair}\nAnswer again, following the schema exactly."
    return text


def prompt_tokens(agent: Agent, items: list[tuple[str, dict[str, Any]]]) -> int:
    """A batch call's input tokens before it is made (what the quota gate reserves for it)."""
    return estimate_tokens(system_instruction(agent) + build_prompt(items))


@dataclass(frozen=True)
class Answer:
    """A step's answer: its output (for a tool request, {"tool_calls": [...]}), or why it has none."""

    output: dict[str, Any] | None = None
    error: str | None = None
    raw: str = ""

    @property
    def ok(self) -> bool:
        return self.output is not None


def parse_answers(text: str | None, agent: Agent, step_ids: list[str]) -> dict[str, Answer]:
    """Each requested step id mapped to its validated output, or to why it has none."""
    wanted = set(step_ids)
    result: dict[str, Answer] = {}
    try:
        body = json.loads(text or "")
    except (TypeError, ValueError) as exc:
        return {sid: Answer(error=f"response is not JSON: {exc}", raw=(text or "")[:2000]) for sid in step_ids}
    answers = body.get("answers") if isinstance(body, dict) else None
    if not isinstance(answers, list):
        return {sid: Answer(error="response has no 'answers' list", raw=(text or "")[:2000]) for sid in step_ids}
    for item in answers:
        if not isinstance(item, dict):
            continue
        sid = str(item.get("step_id", ""))
        if sid not in wanted or (sid in result and result[sid].ok):
            continue  # an id we did not ask for, or a duplicate of a good answer: never mixed in
        result[sid] = _one_answer(agent, item)
    for sid in step_ids:
        result.setdefault(sid, Answer(error="no answer for this step_id in the response"))
    return result


def _one_answer(agent: Agent, item: dict[str, Any]) -> Answer:
    calls = item.get(TOOL_CALLS) if agent.tools else None
    if calls:
        raw = json.dumps(calls, ensure_ascii=False)[:2000]
        if "output" in item and item["output"] not in (None, {}):
            return Answer(error="answer has both an output and tool_calls; give one", raw=raw)
        problem = _tool_calls_problem(agent, calls)
        if problem:
            return Answer(error=problem, raw=raw)
        return Answer(
            output={TOOL_CALLS: [{"tool": c["tool"], "arguments": c.get("arguments") or {}} for c in calls]}, raw=raw
        )
    output = item.get("output")
    raw = json.dumps(output, ensure_ascii=False)[:2000]
    errors = validation_errors(agent.output_schema, output, limit=3)
    if errors:
        why = "; ".join(f"{path or 'output'}: {message}" for path, message in errors)
        return Answer(error=f"answer fails the {agent.name} schema: {why}", raw=raw)
    return Answer(output=output, raw=raw)


def _tool_calls_problem(agent: Agent, calls: Any) -> str | None:
    if not isinstance(calls, list) or len(calls) > MAX_TOOL_CALLS:
        return f"tool_calls must be a list of at most {MAX_TOOL_CALLS} calls"
    names = {t.name for t in agent.tools}
    for call in calls:
        if not isinstance(call, dict) or call.get("tool") not in names:
            tool = call.get("tool") if isinstance(call, dict) else call
            return f"tool_calls names {tool!r}, which is not one of {agent.name}'s tools ({', '.join(sorted(names))})"
        if not isinstance(call.get("arguments", {}), dict):
            return f"the arguments of a {call['tool']} call must be an object"
    return None
