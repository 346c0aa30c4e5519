"""The workflows API: a team pushes its own definitions as numbered, immutable versions, lists what it
can run (its own and the deployer's shared ones), reads any version, and retires its own.

A name another team uses is as unknown to the caller as a name nobody uses (404 either way).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, url_for

from taskapp import tools
from taskapp.domain.definitions.checks import DefinitionError, check_definition
from taskapp.domain.definitions.model import definition_json_schema
from taskapp.domain.definitions.schemas import Problem
from taskapp.pipeline.intake import MAX_VERSION, WORKFLOW_NAME
from taskapp.store import workflows
from taskapp.store.models import Workflow
from web.auth import require_team
from web.context import db, settings
from web.definition_body import read_definition
from web.errors import ApiError
from web.openapi import answers, documented
from web.responses import (
    DefinitionSchema,
    WorkflowDetail,
    WorkflowList,
    WorkflowVersionDetail,
    WorkflowVersionInfo,
    reply,
)
from web.schemas import DefinitionIn
from web.workflow_serializers import version_detail, version_info, workflow_detail, workflow_info

bp = Blueprint("workflows", __name__, url_prefix="/api/workflows")
# GET /api/workflows/schema is the definition's JSON Schema: no workflow of a team may be called that.
RESERVED_NAMES = frozenset({"schema"})


@bp.get("")
@documented(tags=["workflows"], resp=answers(200, WorkflowList, errors=(401, 429)))
@require_team
def list_workflows():
    """The workflows the team can run: its own and the deployer's shared ones (its own name shadows a
    shared one), each at its latest version, with its agents, input schema and graph."""
    session = db()
    listed = [
        workflow_info(item.workflow, item.latest, workflows.definition_of(session, item.latest.id))
        for item in workflows.visible(session, g.team_id)
    ]
    return reply(WorkflowList(workflows=listed))


@bp.get("/schema")
@documented(tags=["workflows"], public=True, resp=answers(200, DefinitionSchema, errors=(429,), dependencies=False))
def definition_schema():
    """The JSON Schema of a workflow definition (for editors: `# yaml-language-server: $schema=...`)."""
    return reply(DefinitionSchema.model_validate(definition_json_schema()))


@bp.put("/<name>")
@documented(
    json=DefinitionIn,
    tags=["workflows"],
    resp=answers(201, WorkflowVersionInfo, errors=(400, 401, 403, 413, 415, 422, 429), also={200: WorkflowVersionInfo}),
)
@require_team
def put_workflow(name: str):
    """Store a definition (JSON, or YAML with `Content-Type: application/yaml`) as the team's next
    version of `name`: 201 with the new version, or 200 with the latest when it is the same.

    The definition is checked first (its agents, stages, schemas, expressions, models and tools):
    a 422 `invalid_definition` lists every problem with its path inside the definition, and
    nothing is stored. Its `name` must be `name` (or left out)."""
    document = read_definition()
    if isinstance(document, dict):
        document = _named(document, name)
    try:
        definition = check_definition(document, models=settings().gemini_models, tools=tools.specs(), shared=False)
    except DefinitionError as exc:
        raise _invalid(exc.problems) from None
    session = db()
    version, created = workflows.push(session, g.team_id, definition)
    workflow = session.get(Workflow, version.workflow_id)
    assert workflow is not None
    session.commit()
    response = reply(version_info(workflow, version), 201 if created else 200)
    response.headers["Location"] = url_for(".get_workflow_version", name=name, number=version.version)
    return response


@bp.get("/<name>")
@documented(tags=["workflows"], resp=answers(200, WorkflowDetail, errors=(401, 404, 429)))
@require_team
def get_workflow(name: str):
    """A workflow the team can run: its current version's definition, tools and graph, and every version."""
    _known_name(name)
    session = db()
    try:
        workflow, versions = workflows.history(session, g.team_id, name)
    except workflows.UnknownWorkflow:
        raise _not_found(name) from None
    return reply(workflow_detail(workflow, versions, workflows.definition_of(session, versions[0].id)))


@bp.get("/<name>/versions/<int:number>")
@documented(tags=["workflows"], resp=answers(200, WorkflowVersionDetail, errors=(401, 404, 429)))
@require_team
def get_workflow_version(name: str, number: int):
    """One version of a workflow the team can run, as it was stored."""
    _known_name(name)
    if not 1 <= number <= MAX_VERSION:
        raise ApiError(404, "not_found", f"workflow {name!r} has no version {number}")
    session = db()
    try:
        version = workflows.resolve(session, g.team_id, name, number)
    except workflows.UnknownWorkflow:
        raise _not_found(name) from None
    except workflows.UnknownVersion as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    workflow = session.get(Workflow, version.workflow_id)
    assert workflow is not None
    return reply(version_detail(workflow, version, workflows.definition_of(session, version.id)))


@bp.delete("/<name>")
@documented(tags=["workflows"], resp=answers(204, None, errors=(401, 403, 404, 429)))
@require_team
def delete_workflow(name: str):
    """Retire the team's own workflow: it is no longer listed and no new run can start it; runs already
    started keep running on their version. Pushing the name again brings it back as a new version.
    A shared workflow is the deployer's (403)."""
    _known_name(name)
    session = db()
    if workflows.retire(session, g.team_id, name) is None:
        if workflows.shared_name_exists(session, name):
            raise ApiError(403, "forbidden", f"workflow {name!r} is shared: the deployer's files define it")
        raise _not_found(name)
    session.commit()
    return Response(status=204)


def _named(document: dict[str, Any], name: str) -> dict[str, Any]:
    """The document with the URL's name (422 when it names another, or a reserved one)."""
    if name in RESERVED_NAMES:
        raise _invalid([Problem("name", f"{name!r} is reserved (GET /api/workflows/{name} is taken)")])
    given = document.get("name")
    if given is not None and given != name:
        raise _invalid([Problem("name", f"{given!r} is not the name in the URL ({name!r})")])
    return {**document, "name": name}


def _invalid(problems: list[Problem]) -> ApiError:
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ApiError(
        422,
        "invalid_definition",
        f"the definition is invalid: {first.path or '(top)'}: {first.reason}{more}",
        [p.as_dict() for p in problems],
    )


def _known_name(name: str) -> None:
    """A name no workflow can have (taskapp.domain.definitions.model.Name) is a 404 before any query."""
    if not WORKFLOW_NAME.fullmatch(name):
        raise _not_found(name)


def _not_found(name: str) -> ApiError:
    return ApiError(404, "not_found", f"no workflow {name!r}")
