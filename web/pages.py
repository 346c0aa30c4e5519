"""Server-rendered pages: sign in (a team API key or a one-time link), submit a run, watch its steps.

Every form post is CSRF-checked by Flask-WTF (web.security); `login_required` reads
the session from PostgreSQL on each request (web.auth).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from flask import Blueprint, abort, flash, g, jsonify, redirect, render_template, request, url_for

from taskapp.celery_app import queue_depths
from taskapp.domain.status import RUN_STATUSES
from taskapp.pipeline import orchestrator
from taskapp.store import dashboard_series as series
from taskapp.store import metrics, workflows
from taskapp.store.models import Run
from taskapp.store.runs import get_run, run_steps, runs_page
from web import auth, submission
from web.auth import login_required
from web.context import db, gate_usage, settings
from web.errors import ApiError
from web.input_form import field_errors, form_fields, read_form
from web.run_filters import PAGE_SIZE, BadFilter, RunFilters, read_filters
from web.serializers import run_rows, run_view

bp = Blueprint("pages", __name__)


@bp.get("/")
@login_required
def index():
    """Runs list (the sign-in page without a session): filters in the URL, refreshed by static/runs.js."""
    try:
        filters = read_filters(request.args)
        runs, cursor = _runs(filters)
    except BadFilter as exc:
        abort(400, exc.message)
    return render_template(
        "runs.html",
        rows=run_rows(runs, datetime.now(UTC)),
        cursor=cursor,
        filters=filters,
        statuses=RUN_STATUSES,
        workflow_names=sorted(item.workflow.name for item in workflows.visible(db(), g.team_id)),
    )


@bp.get("/runs.json")
@login_required
def runs_json():
    """The runs list's rows as JSON, with the page's filters (what static/runs.js polls)."""
    try:
        filters = read_filters(request.args)
        runs, cursor = _runs(filters)
    except BadFilter as exc:
        raise ApiError(400, f"invalid_{exc.field}", exc.message) from None
    return jsonify(runs=run_rows(runs, datetime.now(UTC)), next_cursor=cursor)


def _runs(filters: RunFilters) -> tuple[list[Run], str | None]:
    try:
        return runs_page(
            db(), g.team_id, status=filters.status, workflow=filters.workflow, limit=PAGE_SIZE, cursor=filters.cursor
        )
    except ValueError:
        raise BadFilter(
            "cursor", "That page link is not valid (its cursor was not made here); go back to the runs list."
        ) from None


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with a team API key, posted in a form (a key never travels in a URL)."""
    key = request.form.get("api_key", "")
    if request.method == "POST":
        if key and auth.login_with_key(key):
            return redirect(url_for("pages.index"))
        flash("Unknown or revoked API key.")
    return render_template("login.html")


@bp.post("/login/link")
def login_link():
    """Spend a one-time link from `make run` or `taskapp teams login-link`.

    The link is `/login#link=TOKEN`: a fragment never reaches a server (so no access
    log holds it), and nothing is spent until the person presses the button that
    static/login.js reveals; a link preview or a cross-site navigation spends nothing.
    """
    token = request.form.get("link", "")
    if token and auth.login_with_link(token):
        return redirect(url_for("pages.index"))
    flash(
        "That sign-in link was already used or has expired; ask for a new one "
        "(`taskapp teams login-link TEAM`) or sign in with an API key."
    )
    return render_template("login.html"), 410


@bp.post("/logout")
def logout():
    """End the session on every web process."""
    auth.logout()
    return redirect(url_for("pages.login"))


@bp.route("/runs/new", methods=["GET", "POST"])
@login_required
def new_run():
    """A form built from the chosen workflow version's input schema."""
    team_id = g.team_id
    session = db()
    listed = {item.workflow.name: item for item in workflows.visible(session, team_id)}
    if not listed:
        return render_template("new_run.html", workflow=None, workflows=listed), 200
    name = request.values.get("workflow") or ("research" if "research" in listed else next(iter(listed)))
    version = _version_arg(request.values.get("version"))
    try:
        found = workflows.resolve(session, team_id, name, version)
    except (workflows.UnknownWorkflow, workflows.UnknownVersion):
        abort(404)
    definition = workflows.definition_of(session, found.id)
    schema = definition.input_schema
    fields = form_fields(schema)
    errors: dict[str, str] = {}
    general: list[str] = []
    status = 200
    if request.method == "POST":
        body = {
            "workflow": name,
            "version": version,
            "input": read_form(schema, request.form),
            "options": {"priority": request.form.get("priority", "batch")},
        }
        try:
            run, _ = submission.submit(team_id, body)  # the API's own path: same checks, same limits
            return redirect(url_for("pages.run_detail", run_id=run.id))
        except ApiError as exc:
            errors, general = _form_errors(exc, fields)
            status = exc.status
    windows = [
        settings().batch_policy(a.name, {"max_size": a.batch.max_size, "max_wait_ms": a.batch.max_wait_ms}).max_wait_ms
        for a in definition.agents.values()
    ]
    return render_template(
        "new_run.html",
        workflow=definition.spec,
        version=found.version,
        pinned=version is not None,
        agents=[s.agent for s in definition.spec.stages],
        workflows=listed,
        fields=fields,
        errors=errors,
        general=general,
        values=request.form,
        posted=request.method == "POST",
        priority=request.form.get("priority", "batch"),
        batch_wait_s=max(windows, default=settings().batch_max_wait_ms) / 1000,
    ), status


@bp.get("/dashboard")
@login_required
def dashboard():
    """The team's numbers over a chosen range (the fleet's for operators): time series drawn by
    static/dashboard.js with the vendored uPlot, what batching saved, what waits now, per agent."""
    rng = _range(request.args.get("range"))
    if rng is None:
        abort(400, f"range must be one of {', '.join(series.RANGES)}, not {request.args.get('range', '')[:20]!r}")
    scope = metrics.Scope.of(g.caller.team_id, g.caller.is_operator)
    since = datetime.now(UTC) - timedelta(seconds=rng.seconds)
    gate = metrics.gate_view(gate_usage(), scope)
    return render_template(
        "dashboard.html",
        rng=rng,
        ranges=list(series.RANGES),
        data=dashboard_data(scope, rng, gate),
        agents=metrics.agent_stats(db(), since, scope),
        savings=series.batching_savings(db(), since, scope),
        waits=series.current_waits(db(), scope),
        gate=gate,
        fleet=scope.fleet,
        runs=metrics.run_counts(db(), scope),
        queues=queue_depths() if scope.fleet else None,
    )


@bp.get("/dashboard/series.json")
@login_required
def dashboard_series():
    """The dashboard's series again (static/dashboard.js redraws from it every few seconds)."""
    rng = _range(request.args.get("range"))
    if rng is None:
        raise ApiError(400, "invalid_range", f"range must be one of {', '.join(series.RANGES)}")
    scope = metrics.Scope.of(g.caller.team_id, g.caller.is_operator)
    return jsonify(dashboard_data(scope, rng, metrics.gate_view(gate_usage(), scope)))


def _range(raw: str | None) -> series.Range | None:
    return series.RANGES.get(raw or "1h")


def dashboard_data(scope: metrics.Scope, rng: series.Range, gate: dict) -> dict:
    """The series and each model's limits (requests and input tokens per minute) to draw them against."""
    limits = {
        model: {"rpm": dims.get("rpm", {}).get("limit"), "tpm": dims.get("tpm", {}).get("limit")}
        for model, dims in gate.items()
    }
    return {**series.time_series(db(), rng, scope), "limits": limits}


@bp.post("/runs/<run_id>/cancel")
@login_required
def cancel(run_id: str):
    """The run page's cancel button (CSRF-checked)."""
    team_id = g.team_id
    try:
        run = orchestrator.cancel_run(db(), uuid.UUID(run_id), team_id)
    except ValueError:
        run = None
    if run is None:
        abort(404)
    db().commit()
    return redirect(url_for("pages.run_detail", run_id=run.id))


@bp.get("/runs/<run_id>")
@login_required
def run_detail(run_id: str):
    """A run's steps and final output; refreshes itself until the run ends."""
    run = _team_run(run_id)
    return render_template("run.html", view=run_view(run, run_steps(db(), run.id), datetime.now(UTC)))


@bp.get("/runs/<run_id>/view.json")
@login_required
def run_view_json(run_id: str):
    """The run page's data (static/run.js reads it again on each event of the run's stream)."""
    run = _team_run(run_id)
    return jsonify(run_view(run, run_steps(db(), run.id), datetime.now(UTC)))


def _team_run(run_id: str) -> Run:
    """The team's run, read with its steps, events and batches in one snapshot (REPEATABLE READ):
    else a flush committing between two reads could show a step `queued` whose events say batched."""
    session = db()
    session.rollback()  # the sign-in check's read-only transaction
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    try:
        run = get_run(db(), g.team_id, uuid.UUID(run_id))
    except ValueError:
        run = None
    if run is None:
        abort(404)
    return run


def _form_errors(exc: ApiError, fields: list) -> tuple[dict[str, str], list[str]]:
    """A refusal as a person reads it: a sentence beside each field at fault, others above the form."""
    if exc.status == 503:
        return {}, ["The run could not be queued just now; please try again in a few seconds."]
    if exc.status == 429:
        return {}, [f"Too much work is waiting right now ({exc.message}); please try again shortly."]
    if not isinstance(exc.details, list):
        return {}, [exc.message]
    details = [d for d in exc.details if isinstance(d, dict)]
    priority = [d for d in details if d.get("field") == "options.priority"]
    by_field, general = field_errors(fields, request.form, [d for d in details if d not in priority])
    if priority:
        by_field["priority"] = "Choose one of the two priorities."
    return by_field, general


def _version_arg(raw: str | None) -> int | None:
    """`?version=N` (empty: the latest); anything else is no such page."""
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 2**31 - 1:
        abort(404)
    return int(raw)
