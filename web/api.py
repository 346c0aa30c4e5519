"""The JSON API (DESIGN.md §3)."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from taskapp import metrics, orchestrator, queues, store
from taskapp.agents import get_agent
from taskapp.celery_app import app as celery_app
from taskapp.workflows import WORKFLOWS
from web import submission
from web.auth import metrics_scope, require_team, team_run
from web.context import db, gate_usage
from web.errors import ApiError
from web.serializers import run_json, run_summary_json

bp = Blueprint("api", __name__, url_prefix="/api")
MAX_PAGE = 100


@bp.post("/runs")
@require_team
def create_run():
    """Validate, store and enqueue a run; 202 at once (never waits on a worker or an LLM)."""
    run, created = submission.submit(g.team_id, request.get_json(), request.headers.get("Idempotency-Key"))
    response = jsonify(run_summary_json(run) | {"created": created})
    response.status_code = 202
    response.headers["Location"] = response.json["links"]["self"]
    return response


@bp.get("/runs")
@require_team
def list_runs():
    """The team's runs, newest first; `?status=` filters, `?cursor=` pages."""
    status = request.args.get("status")
    if status and status not in ("queued", "running", "succeeded", "failed", "cancelled"):
        raise ApiError(400, "invalid_status", f"unknown status {status!r}")
    try:
        limit = min(MAX_PAGE, max(1, int(request.args.get("limit", 20))))
    except ValueError:
        raise ApiError(400, "invalid_limit", "limit must be an integer") from None
    try:
        runs, cursor = store.list_runs(db(), g.team_id, status=status, limit=limit,
                                       cursor=request.args.get("cursor"))
    except ValueError as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    progress = store.step_progress(db(), [r.id for r in runs])
    return jsonify({"runs": [run_summary_json(r, progress.get(r.id)) for r in runs], "next_cursor": cursor})


@bp.get("/runs/<run_id>")
@require_team
def get_run(run_id: str):
    """A run with its steps, outputs, and token and cost totals."""
    run = team_run(run_id)
    return jsonify(run_json(run, store.run_steps(db(), run.id)))


@bp.post("/runs/<run_id>/cancel")
@require_team
def cancel_run(run_id: str):
    """Cancel: steps not yet called are never called."""
    run = team_run(run_id)
    session = db()
    run = orchestrator.cancel_run(session, run.id, g.team_id)
    session.commit()
    return jsonify(run_summary_json(run)), 202


@bp.get("/metrics")
def get_metrics():
    """Per agent and model: steps, batches, latency, tokens, cost, 429s; quota use.

    A team's key or session sees its own numbers; operators (METRICS_TOKEN, or an
    operator team) see the fleet's, with queue depths.
    """
    scope = metrics_scope()
    try:
        window_s = min(30 * 86400, max(60, int(request.args.get("window_s", 3600))))
    except ValueError:
        raise ApiError(400, "invalid_window", "window_s must be an integer number of seconds") from None
    depths = queues.depths(celery_app) if scope.fleet else None
    return jsonify(metrics.snapshot(db(), depths, window_s, gate_usage(), scope))


@bp.get("/workflows")
@require_team
def list_workflows():
    """The workflows that can be run, with their agents and input schemas."""
    return jsonify({"workflows": [
        {"name": wf.name, "description": wf.description, "input_schema": wf.input_schema.model_json_schema(),
         "agents": [{"name": a, "model": get_agent(a).model, "description": get_agent(a).description}
                    for a in wf.agents]}
        for wf in WORKFLOWS.values()
    ]})
