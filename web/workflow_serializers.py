"""Workflows and their versions as the API's response models (web/responses.py), for the API and the pages."""

from __future__ import annotations

from typing import Any

from taskapp.domain.agents import Agent
from taskapp.domain.definitions.checks import Definition
from taskapp.domain.definitions.graph import workflow_graph
from taskapp.store.models import Workflow, WorkflowVersion
from web.responses import (
    AgentInfo,
    ToolInfo,
    VersionInfo,
    WorkflowDetail,
    WorkflowGraph,
    WorkflowInfo,
    WorkflowVersionDetail,
    WorkflowVersionInfo,
)


def scope_of(workflow: Workflow) -> str:
    return "shared" if workflow.team_id is None else "team"


def graph_of(definition: Definition) -> WorkflowGraph:
    return WorkflowGraph.model_validate(workflow_graph(definition.spec).as_dict())


def workflow_info(workflow: Workflow, latest: WorkflowVersion, definition: Definition) -> WorkflowInfo:
    return WorkflowInfo(
        name=workflow.name,
        scope=scope_of(workflow),  # type: ignore[arg-type]
        version=latest.version,
        description=definition.spec.description,
        input_schema=definition.input_schema,
        agents=[AgentInfo(name=a.name, model=a.model, description=a.description) for a in agents_in_order(definition)],
        graph=graph_of(definition),
    )


def agents_in_order(definition: Definition) -> list[Agent]:
    """The agents in the order the stages first use them (a stored document's keys have no order:
    PostgreSQL's jsonb sorts them), then any no stage uses."""
    names = list(dict.fromkeys([s.agent for s in definition.spec.stages] + sorted(definition.agents)))
    return [definition.agents[n] for n in names if n in definition.agents]


def version_info(workflow: Workflow, version: WorkflowVersion) -> WorkflowVersionInfo:
    return WorkflowVersionInfo(
        name=workflow.name,
        scope=scope_of(workflow),  # type: ignore[arg-type]
        version=version.version,
        content_hash=version.content_hash,
        created_at=version.created_at,
    )


def _detail_fields(workflow: Workflow, version: WorkflowVersion, definition: Definition) -> dict[str, Any]:
    return {
        **version_info(workflow, version).model_dump(),
        "definition": definition_document(definition),
        "tools": [ToolInfo(**t.as_dict()) for _, t in sorted(definition.tools.items())],
        "graph": graph_of(definition),
    }


def version_detail(workflow: Workflow, version: WorkflowVersion, definition: Definition) -> WorkflowVersionDetail:
    return WorkflowVersionDetail(**_detail_fields(workflow, version, definition))


def workflow_detail(workflow: Workflow, versions: list[WorkflowVersion], definition: Definition) -> WorkflowDetail:
    """`versions`: newest first; the first is the current one, whose definition is `definition`."""
    return WorkflowDetail(
        **_detail_fields(workflow, versions[0], definition),
        versions=[
            VersionInfo(version=v.version, content_hash=v.content_hash, created_at=v.created_at) for v in versions
        ],
    )


def definition_document(definition: Definition) -> dict[str, Any]:
    """The stored document less the tools it snapshotted (sent beside it): what a team can PUT back."""
    return {key: value for key, value in definition.document.items() if key != "tools"}
