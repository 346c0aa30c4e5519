"""One prompt for many steps, and the answers taken apart again.

The batched prompt carries every step with its id and asks for structured output
holding one answer per id. Parsing checks each answer on its own, so a missing or
malformed answer fails (or is retried for) that step alone, never the batch.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from taskapp.domain.agents import Agent
from taskapp.domain.tokens import estimate_tokens

BATCH_RULES = (
    "You receive a JSON list of tasks, each with a step_id and an input. Handle each task "
    'independently. Reply with JSON: {"answers": [{"step_id": <the task\'s step_id>, '
    '"output": <your answer>}]}, exactly one answer per step_id, copying each step_id verbatim.'
)


class _BatchSchema(BaseModel):
    """A response schema whose JSON schema is generated once.

    The SDK turns a pydantic response schema into its wire form on every call, starting
    with `model_json_schema()`: about a millisecond of CPU per call for our nested
    schemas, and they never change. The SDK edits what it gets, so each call gets a copy.
    """

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = (cls, args, tuple(sorted(kwargs.items())))
        schema = _json_schemas.get(key)
        if schema is None:
            schema = _json_schemas[key] = super().model_json_schema(*args, **kwargs)
        return copy.deepcopy(schema)


_json_schemas: dict[Any, dict[str, Any]] = {}


@functools.cache
def batch_schema(agent: Agent) -> type[BaseModel]:
    """The response schema for a batch of this agent's steps."""
    answer = create_model(f"{agent.name.title()}Answer", step_id=(str, ...), output=(agent.output_schema, ...))
    # `answer` is a model built at run time, which mypy cannot use as a type argument.
    return create_model(f"{agent.name.title()}Batch", __base__=_BatchSchema, answers=(list[answer], ...))  # type: ignore[valid-type]


def system_instruction(agent: Agent) -> str:
    return f"{agent.system_prompt}\n\n{BATCH_RULES}"


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
        raw = json.dumps(item.get("output"), ensure_ascii=False)[:2000]
        try:
            output = agent.output_schema.model_validate(item.get("output")).model_dump(mode="json")
            result[sid] = Answer(output=output, raw=raw)
        except ValidationError as exc:
            result[sid] = Answer(error=f"answer fails the {agent.name} schema: {_brief(exc)}", raw=raw)
    for sid in step_ids:
        result.setdefault(sid, Answer(error="no answer for this step_id in the response"))
    return result


def _brief(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'output'}: {e['msg']}" for e in exc.errors()[:3])
