"""The workflows pages: what a team can run, every version, and each workflow's graph as a picture
(drawn by static/graph.js from the same graph the API sends)."""

from __future__ import annotations

from flask import Blueprint, abort, g, render_template

from taskapp.store import workflows
from taskapp.store.models import Workflow
from web.auth import login_required
from web.context import db
from web.workflow_serializers import version_detail, workflow_info

bp = Blueprint("workflow_pages", __name__)
SHOWN_VERSIONS = 10


@bp.get("/workflows")
@login_required
def workflows_page():
    """The team's workflows and the shared ones: versions, agents, and each one's graph as a picture."""
    session = db()
    cards = []
    for item in workflows.visible(session, g.team_id):
        _, versions = workflows.history(session, g.team_id, item.workflow.name)
        definition = workflows.definition_of(session, item.latest.id)
        cards.append(
            {
                "info": workflow_info(item.workflow, item.latest, definition).model_dump(mode="json"),
                "versions": versions[:SHOWN_VERSIONS],
                "more_versions": max(0, len(versions) - SHOWN_VERSIONS),
            }
        )
    return render_template("workflows.html", cards=cards)


@bp.get("/workflows/<name>/versions/<int:number>")
@login_required
def workflow_version_page(name: str, number: int):
    """One version: its graph, agents and definition as stored."""
    session = db()
    try:
        found = workflows.resolve(session, g.team_id, name, number)
    except (workflows.UnknownWorkflow, workflows.UnknownVersion):
        abort(404)
    workflow = session.get(Workflow, found.workflow_id)
    assert workflow is not None
    definition = workflows.definition_of(session, found.id)
    detail = version_detail(workflow, found, definition)
    return render_template("workflow_version.html", detail=detail.model_dump(mode="json"), spec=definition.spec)
