"""The JSON API; each view declares its contract for the OpenAPI document (web/openapi.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from flask import Blueprint, g, request
from pydantic import BaseModel, ValidationError

from taskapp.celery_app import queue_depths
from taskapp.pipeline import intake, orchestrator
from taskapp.store import metrics
from taskapp.store.runs import run_steps, runs_page, step_progress
from web import submission
from web.auth import metrics_scope, require_team, team_run
from web.context import db, gate_usage
from web.errors import ApiError
from web.openapi import answers, documented
from web.responses import MetricsSnapshot, RunCreated, RunDetail, RunPage, RunSummary, reply
from web.schemas import MetricsQuery, RunCreate, RunCreateHeaders, RunListQuery
from web.serializers import pinned_versions, run_detail, run_summary

bp = Blueprint("api", __name__, url_prefix="/api")
M = TypeVar("M", bound=BaseModel)


@bp.post("/runs")
@documented(
    json=RunCreate,
    headers=RunCreateHeaders,
    tags=["runs"],
    resp=answers(202, RunCreated, errors=(400, 401, 403, 409, 413, 422, 429)),
)
@require_team
def create_run():
    """Validate, store and enqueue a run; 202 at once (never waits on a worker or an LLM)."""
    run, created = submission.submit(g.team_id, request.get_json(), request.headers.get("Idempotency-Key"))
    body = RunCreated(**dict(run_summary(run)), created=created)
    response = reply(body, 202)
    response.headers["Location"] = body.links.self
    return response


@bp.get("/runs")
@documented(query=RunListQuery, tags=["runs"], resp=answers(200, RunPage, errors=(400, 401, 429)))
@require_team
def list_runs():
    """The team's runs, newest first; `?status=` and `?workflow=` filter, `?cursor=` pages."""
    query = _parse(RunListQuery, request.args, "invalid_{field}")
    try:
        runs, cursor = runs_page(
            db(), g.team_id, status=query.status, workflow=query.workflow, limit=query.limit, cursor=query.cursor
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    progress = step_progress(db(), [r.id for r in runs])
    versions = pinned_versions(runs)
    return reply(RunPage(runs=[run_summary(r, progress.get(r.id), versions) for r in runs], next_cursor=cursor))


@bp.get("/runs/<run_id>")
@documented(tags=["runs"], resp=answers(200, RunDetail, errors=(401, 404, 429)))
@require_team
def get_run(run_id: str):
    """A run with its steps, outputs, and token and cost totals."""
    run = team_run(run_id)
    return reply(run_detail(run, run_steps(db(), run.id)))


@bp.post("/runs/<run_id>/cancel")
@documented(tags=["runs"], resp=answers(202, RunSummary, errors=(401, 403, 404, 429)))
@require_team
def cancel_run(run_id: str):
    """Cancel: steps not yet called are never called."""
    run = team_run(run_id)
    session = db()
    cancelled = orchestrator.cancel_run(session, run.id, g.team_id)
    if cancelled is None:  # runs are never deleted: team_run has just read this one
        raise ApiError(404, "not_found", "no such run")
    session.commit()
    return reply(run_summary(cancelled), 202)


@bp.get("/metrics")
@documented(query=MetricsQuery, tags=["metrics"], resp=answers(200, MetricsSnapshot, errors=(400, 401, 429)))
def get_metrics():
    """Per agent and model: steps, batches, latency, tokens, cost, 429s; quota use.

    A team's key or session sees its own numbers; operators (METRICS_TOKEN, or an
    operator team) see the fleet's, with queue depths.
    """
    scope = metrics_scope()
    window_s = _parse(MetricsQuery, request.args, "invalid_window").window_s
    depths = queue_depths() if scope.fleet else None
    snapshot = metrics.snapshot(db(), depths, window_s, gate_usage(), scope)
    return reply(MetricsSnapshot.model_validate(snapshot), omit_unset=True)


def _parse(model: type[M], values: Mapping[str, str], code: str) -> M:
    """A query string or headers read through their model; a 400 names the first field at fault."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        details = intake.field_errors(exc)
        field = str(exc.errors()[0]["loc"][0]).lower().replace("-", "_")
        raise ApiError(
            400, code.format(field=field), details[0]["field"] + ": " + details[0]["message"], details
        ) from None
