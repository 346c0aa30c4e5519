"""Server-rendered pages: sign in with an API key, submit a run, watch its steps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for

from taskapp import metrics, orchestrator, queues, store
from taskapp.celery_app import app as celery_app
from taskapp.workflows import WORKFLOWS, get_workflow
from web import auth, submission
from web.context import db, gate_usage
from web.errors import ApiError
from web.serializers import run_json

bp = Blueprint("pages", __name__)


def _team_id() -> uuid.UUID | None:
    return uuid.UUID(session["team_id"]) if "team_id" in session else None


@bp.get("/")
def index():
    """Runs list, or the sign-in page."""
    team_id = _team_id()
    if team_id is None:
        return redirect(url_for("pages.login"))
    try:
        runs, cursor = store.list_runs(db(), team_id, limit=50, cursor=request.args.get("cursor"))
    except ValueError:
        abort(400, "That page link is not valid (its cursor was not made here); go back to the runs list.")
    progress = store.step_progress(db(), [r.id for r in runs])
    return render_template("runs.html", runs=runs, progress=progress, cursor=cursor)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with a team API key (`?key=` lets `taskapp dev` print a one-click link)."""
    key = request.form.get("api_key") or request.args.get("key")
    if key:
        if auth.login(key):
            db().commit()
            return redirect(url_for("pages.index"))
        flash("Unknown or revoked API key.")
    return render_template("login.html")


@bp.post("/logout")
def logout():
    """Forget the session."""
    session.clear()
    return redirect(url_for("pages.login"))


@bp.route("/runs/new", methods=["GET", "POST"])
def new_run():
    """A form built from the workflow's input schema."""
    team_id = _team_id()
    if team_id is None:
        return redirect(url_for("pages.login"))
    name = request.values.get("workflow", "research")
    if name not in WORKFLOWS:
        abort(404)
    workflow = get_workflow(name)
    schema = workflow.input_schema.model_json_schema()
    errors: list[str] = []
    status = 200
    if request.method == "POST":
        if request.form.get("csrf_token") != auth.csrf_token():
            abort(400, "invalid form token; reload the page")
        body = {"workflow": name, "input": _form_input(schema),
                "options": {"priority": request.form.get("priority", "batch")}}
        try:
            run, _ = submission.submit(team_id, body)  # the API's own path: same checks, same limits
            return redirect(url_for("pages.run_detail", run_id=run.id))
        except ApiError as exc:
            errors, status = _form_errors(exc, schema), exc.status
    return render_template("new_run.html", workflow=workflow, workflows=WORKFLOWS, schema=schema,
                           errors=errors, values=request.form, csrf=auth.csrf_token()), status


@bp.get("/dashboard")
def dashboard():
    """Operators' charts: latency and cost per agent, batch sizes, quota use over time."""
    if _team_id() is None:
        return redirect(url_for("pages.login"))
    since = datetime.now(UTC) - timedelta(hours=1)
    agents = metrics.agent_stats(db(), since)
    timeline = metrics.minute_series(metrics.usage_by_minute(db(), minutes=30), minutes=30)
    def series(attr: str) -> list[tuple[str, float]]:
        return [(a.agent, getattr(a, attr)) for a in agents if getattr(a, attr) is not None]

    charts = {"p50": series("latency_p50_ms"), "p95": series("latency_p95_ms"), "cost": series("cost_usd"),
              "batch": series("mean_batch_size")}
    return render_template("dashboard.html", agents=agents, charts=charts, timeline=timeline,
                           quota=metrics.quota_use(db()), gate=gate_usage(),
                           runs=metrics.run_counts(db()), queues=queues.depths(celery_app))


@bp.post("/runs/<run_id>/cancel")
def cancel(run_id: str):
    """The run page's cancel button (CSRF-checked)."""
    team_id = _team_id()
    if team_id is None:
        return redirect(url_for("pages.login"))
    if request.form.get("csrf_token") != auth.csrf_token():
        abort(400, "invalid form token; reload the page")
    try:
        run = orchestrator.cancel_run(db(), uuid.UUID(run_id), team_id)
    except ValueError:
        run = None
    if run is None:
        abort(404)
    db().commit()
    return redirect(url_for("pages.run_detail", run_id=run.id))


@bp.get("/runs/<run_id>")
def run_detail(run_id: str):
    """A run's steps and final output; refreshes itself until the run ends."""
    team_id = _team_id()
    if team_id is None:
        return redirect(url_for("pages.login"))
    try:
        run = store.get_run(db(), team_id, uuid.UUID(run_id))
    except ValueError:
        run = None
    if run is None:
        abort(404)
    return render_template("run.html", run=run_json(run, store.run_steps(db(), run.id)), csrf=auth.csrf_token())


def _form_errors(exc: ApiError, schema: dict) -> list[str]:
    """A refusal as lines a person reads: each field by its label on the form."""
    if exc.status == 503:
        return [f"Could not enqueue the run right now ({exc.message}); try again in a few seconds."]
    if not isinstance(exc.details, list):
        return [exc.message]
    labels = {field: spec.get("title", field) for field, spec in schema.get("properties", {}).items()}
    labels["options.priority"] = "Priority"
    return [f"{labels.get(d['field'], d['field'])}: {d['message']}" for d in exc.details] or [exc.message]


def _form_input(schema: dict) -> dict:
    """Form fields back into typed JSON values (the workflow schema validates them next)."""
    out: dict = {}
    for field, spec in schema.get("properties", {}).items():
        raw = request.form.get(field, "")
        if raw == "":
            continue
        if spec.get("type") == "integer":
            try:
                out[field] = int(raw)
            except ValueError:
                out[field] = raw
        else:
            out[field] = raw
    return out
