"""Agents and the tools they may call: plain data, built from workflow definitions.

An agent's identity (`Agent.id`) is a hash of everything that shapes its calls (model,
prompt, schemas, tools, batch policy): steps share a batch buffer, and so a prompt, only
when their agents are the same in all of it, whichever workflow or version they came from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ToolSpec:
    """A registered tool as a definition snapshots it: what the model is told and the policy it runs under."""

    name: str
    description: str
    args_schema: dict[str, Any]
    timeout_s: float = 10.0
    retries: int = 0
    on_error: Literal["feed_back", "fail"] = "feed_back"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "args_schema": self.args_schema,
            "timeout_s": self.timeout_s,
            "retries": self.retries,
            "on_error": self.on_error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolSpec:
        return cls(**data)


@dataclass(frozen=True)
class BatchOptions:
    max_size: int | None = None
    max_wait_ms: int | None = None
    across_teams: bool = False


@dataclass(frozen=True, eq=False)
class Agent:
    name: str
    model: str
    system_prompt: str
    output_schema: dict[str, Any]
    temperature: float = 0.2
    max_output_tokens: int = 2048
    description: str = ""
    tools: tuple[ToolSpec, ...] = ()
    max_tool_rounds: int = 3
    batch: BatchOptions = field(default_factory=BatchOptions)

    @property
    def id(self) -> str:
        """`name@hash`: equal for two agents exactly when their calls would be the same."""
        return self.__dict__.get("_id") or self._compute_id()

    def _compute_id(self) -> str:
        body = {
            "name": self.name,
            "model": self.model,
            "system_prompt": self.system_prompt,
            "output_schema": self.output_schema,
            "temperature": self.temperature,
            "max_output_tokens": self.max_output_tokens,
            "tools": [t.as_dict() for t in self.tools],
            "max_tool_rounds": self.max_tool_rounds,
            "batch": [self.batch.max_size, self.batch.max_wait_ms, self.batch.across_teams],
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        value = f"{self.name}@{digest[:12]}"
        object.__setattr__(self, "_id", value)
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Agent) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)


def lane_of(agent: Agent, team_id: str | None) -> str:
    """The batch buffer a step of `agent` joins: the agent's own, and its team's unless the
    deployer let the agent batch across teams (one prompt never mixes teams otherwise)."""
    if agent.batch.across_teams or team_id is None:
        return agent.id
    return f"{agent.id}~{team_id}"


def agent_id_of_lane(lane: str) -> str:
    return lane.split("~", 1)[0]
