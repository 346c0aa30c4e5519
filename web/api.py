"""The JSON API; each view declares its contract for the OpenAPI document (web/openapi.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from flask import Blueprint, g, request
from pydantic import BaseModel, ValidationError

from taskapp import intake, metrics, orchestrator, queues, store
from taskapp.agents import get_agent
from taskapp.celery_app import app as celery_app
from taskapp.workflows import WORKFLOWS
from web.auth import require_team, team_run
from web.context import db, gate_usage, settings
from web.errors import ApiError
from web.openapi import answers, documented
from web.responses import (
    AgentInfo,
    MetricsSnapshot,
    RunCreated,
    RunDetail,
    RunPage,
    RunSummary,
    WorkflowInfo,
    WorkflowList,
    reply,
)
from web.schemas import MetricsQuery, RunCreate, RunCreateHeaders, RunListQuery
from web.serializers import run_detail, run_summary

bp = Blueprint("api", __name__, url_prefix="/api")
M = TypeVar("M", bound=BaseModel)


@bp.post("/runs")
@documented(json=RunCreate, headers=RunCreateHeaders, tags=["runs"],
            resp=answers(202, RunCreated, errors=(400, 401, 422, 429)))
@require_team
def create_run():
    """Validate, store and enqueue a run; 202 at once (never waits on a worker or an LLM)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    try:
        spec = RunCreate.model_validate(body)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", "request body is invalid", _pydantic_details(exc)) from None
    key = _parse(RunCreateHeaders, request.headers, "invalid_idempotency_key").idempotency_key
    try:
        run, created = intake.submit_run(db(), team_id=g.team_id, workflow=spec.workflow,
                                         input=spec.input, options=spec.options.model_dump(exclude_none=True),
                                         idempotency_key=key, max_waiting=settings().max_waiting_work)
    except intake.Overloaded as exc:
        raise ApiError(429, "overloaded", str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    except intake.InvalidRun as exc:
        raise ApiError(422, "invalid_input", str(exc), exc.details) from None
    except intake.EnqueueFailed as exc:
        raise ApiError(503, "unavailable", str(exc), headers={"Retry-After": "5"}) from None
    body = RunCreated(**dict(run_summary(run)), created=created)
    response = reply(body, 202)
    response.headers["Location"] = body.links.self
    return response


@bp.get("/runs")
@documented(query=RunListQuery, tags=["runs"], resp=answers(200, RunPage, errors=(400, 401)))
@require_team
def list_runs():
    """The team's runs, newest first; `?status=` filters, `?cursor=` pages."""
    query = _parse(RunListQuery, request.args, "invalid_{field}")
    try:
        runs, cursor = store.list_runs(db(), g.team_id, status=query.status, limit=query.limit,
                                       cursor=query.cursor)
    except ValueError as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    progress = store.step_progress(db(), [r.id for r in runs])
    return reply(RunPage(runs=[run_summary(r, progress.get(r.id)) for r in runs], next_cursor=cursor))


@bp.get("/runs/<run_id>")
@documented(tags=["runs"], resp=answers(200, RunDetail, errors=(401, 404)))
@require_team
def get_run(run_id: str):
    """A run with its steps, outputs, and token and cost totals."""
    run = team_run(run_id)
    return reply(run_detail(run, store.run_steps(db(), run.id)))


@bp.post("/runs/<run_id>/cancel")
@documented(tags=["runs"], resp=answers(202, RunSummary, errors=(401, 404)))
@require_team
def cancel_run(run_id: str):
    """Cancel: steps not yet called are never called."""
    run = team_run(run_id)
    session = db()
    run = orchestrator.cancel_run(session, run.id, g.team_id)
    session.commit()
    return reply(run_summary(run), 202)


@bp.get("/metrics")
@documented(query=MetricsQuery, tags=["metrics"], resp=answers(200, MetricsSnapshot, errors=(400, 401)))
@require_team
def get_metrics():
    """Per agent and model: steps, batches, latency, tokens, cost, 429s; quota use; queue depths."""
    window_s = _parse(MetricsQuery, request.args, "invalid_window").window_s
    snapshot = metrics.snapshot(db(), queues.depths(celery_app), window_s, gate_usage())
    return reply(MetricsSnapshot.model_validate(snapshot))


@bp.get("/workflows")
@documented(tags=["workflows"], resp=answers(200, WorkflowList, errors=(401,)))
@require_team
def list_workflows():
    """The workflows that can be run, with their agents and input schemas."""
    return reply(WorkflowList(workflows=[
        WorkflowInfo(name=wf.name, description=wf.description, input_schema=wf.input_schema.model_json_schema(),
                     agents=[AgentInfo(name=a, model=get_agent(a).model, description=get_agent(a).description)
                             for a in wf.agents])
        for wf in WORKFLOWS.values()
    ]))


def _parse(model: type[M], values: Mapping[str, str], code: str) -> M:
    """A query string or headers read through their model; a 400 names the first field at fault."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        details = _pydantic_details(exc)
        field = str(exc.errors()[0]["loc"][0]).lower().replace("-", "_")
        raise ApiError(400, code.format(field=field), details[0]["field"] + ": " + details[0]["message"],
                       details) from None


def _pydantic_details(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
