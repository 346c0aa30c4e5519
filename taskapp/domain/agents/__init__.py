"""Agents are data: a name, a model, a system prompt and an output schema.

The registry is the one list workers and the web layer consult; adding an agent
is adding a declaration, not code paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True)
class Agent:
    name: str
    model: str
    system_prompt: str
    output_schema: type[BaseModel]
    temperature: float = 0.2
    max_output_tokens: int = 2048
    description: str = ""


class UnknownAgent(KeyError):
    pass


_REGISTRY: dict[str, Agent] = {}


def register(*agents: Agent) -> None:
    for agent in agents:
        _REGISTRY[agent.name] = agent


def get_agent(name: str) -> Agent:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownAgent(name) from None


def all_agents() -> list[Agent]:
    _load_builtin()
    return list(_REGISTRY.values())


def models_in_use() -> list[str]:
    """Every model some agent calls: one Celery queue each."""
    return sorted({agent.model for agent in all_agents()})


def _load_builtin() -> None:
    if not _REGISTRY:
        from taskapp.domain.agents import research, summarize  # noqa: F401  (registers on import)
