"""Runs and steps as the API's response models (web/responses.py), shared by the API and the pages."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Any

from flask import url_for

from taskapp.domain.definitions.graph import Graph, workflow_graph
from taskapp.domain.pricing import to_cents
from taskapp.domain.run_view import (
    PHASE_LABELS,
    Phase,
    StepStage,
    input_preview,
    outcome,
    phase_totals,
    stage_progress,
    step_phases,
)
from taskapp.store import workflows
from taskapp.store.models import FINAL_RUN_STATUSES, Run, Step
from taskapp.store.run_view import BatchShare, RunSteps, batch_shares, runs_steps, step_events
from taskapp.store.runs import run_totals
from taskapp.store.workflows import version_numbers
from web.context import db
from web.responses import Progress, RunDetail, RunLinks, RunSummary, RunTotals, StepView


def step_view(step: Step) -> StepView:
    wait_ms = int((step.started_at - step.queued_at).total_seconds() * 1000) if step.started_at else None
    latency_ms = (
        int((step.finished_at - step.started_at).total_seconds() * 1000)
        if step.finished_at and step.started_at
        else None
    )
    return StepView(
        id=str(step.id),
        seq=step.seq,
        agent=step.agent,
        model=step.model,
        status=step.status,
        input=step.input,
        output=step.output,
        error=step.error,
        attempts=step.attempts,
        batch_id=str(step.batch_id) if step.batch_id else None,
        tokens_in=step.tokens_in,
        tokens_out=step.tokens_out,
        tokens_cached=step.tokens_cached or 0,
        cost_usd=float(step.cost_usd),
        wait_ms=wait_ms,
        buffer_wait_ms=step.buffer_wait_ms,
        latency_ms=latency_ms,
        queued_at=step.queued_at,
        started_at=step.started_at,
        finished_at=step.finished_at,
    )


def _summary_fields(run: Run, progress: tuple[int, int] | None, version: int | None) -> dict[str, Any]:
    done, total = progress or (0, 0)
    return {
        "id": str(run.id),
        "workflow": run.workflow,
        "workflow_version": version,
        "status": run.status,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "error": run.error,
        "progress": Progress(steps_done=done, steps=total),
        "links": links(run),
    }


def run_summary(
    run: Run, progress: tuple[int, int] | None = None, versions: dict[uuid.UUID, int] | None = None
) -> RunSummary:
    """`versions`: the runs' pinned version numbers, read for a page of runs at once (`pinned_versions`)."""
    if versions is None:
        versions = pinned_versions([run])
    return RunSummary(**_summary_fields(run, progress, versions.get(run.id)))


def pinned_versions(runs: list[Run]) -> dict[uuid.UUID, int]:
    """Each run's pinned workflow version number, by run id (one query for them all)."""
    numbers = version_numbers(db(), [r.workflow_version_id for r in runs])
    return {r.id: numbers[r.workflow_version_id] for r in runs if r.workflow_version_id in numbers}


def run_detail(run: Run, steps: list[Step]) -> RunDetail:
    totals = run_totals(steps)
    return RunDetail(
        **_summary_fields(run, (totals.steps_done, totals.steps), pinned_versions([run]).get(run.id)),
        input=run.input,
        options=run.options,
        output=run.output,
        totals=RunTotals(
            steps=totals.steps,
            steps_done=totals.steps_done,
            tokens_in=totals.tokens_in,
            tokens_out=totals.tokens_out,
            tokens_cached=totals.tokens_cached,
            cost_usd=float(totals.cost_usd),
            cost_usd_exact=str(totals.cost_usd),
            cost_usd_rounded=float(to_cents(totals.cost_usd)),
            llm_calls=totals.llm_calls,
        ),
        steps=[step_view(s) for s in steps],
    )


def run_json(run: Run, steps: list[Step]) -> dict[str, Any]:
    """The run as the API sends it, as plain JSON values (for templates)."""
    return run_detail(run, steps).model_dump(mode="json")


def links(run: Run) -> RunLinks:
    self_url = url_for("api.get_run", run_id=run.id)
    return RunLinks(self=self_url, events=self_url + "/events", ui=url_for("pages.run_detail", run_id=run.id))


# --- The UI's own JSON (the run page and the runs list read it; not part of the API's contract) ---


def _ms(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds() * 1000))


def duration_ms(run: Run, now: datetime) -> int | None:
    """From the run's start (else its creation) to its end, or to now while it works."""
    start = run.started_at or run.created_at
    if run.status in FINAL_RUN_STATUSES:
        return _ms(start, run.finished_at) if run.finished_at else None
    return _ms(start, now)


def _graph(run: Run) -> Graph | None:
    try:
        return workflow_graph(workflows.definition_of_run(db(), run).spec)
    except (workflows.UnknownWorkflow, workflows.UnknownVersion):
        return None


def _progress(graph: Graph | None, run: Run, stages: list[StepStage]) -> dict[str, Any]:
    if graph is None:
        return {"done": 0, "total": 0, "states": {}, "current": None, "loops": 0, "last_done": None}
    return asdict(stage_progress(graph, run.status, stages))


def run_row(run: Run, steps: RunSteps, graph: Graph | None, now: datetime) -> dict[str, Any]:
    """One line of the runs list."""
    told = outcome(run.status, run.error, run.output)
    return {
        "id": str(run.id),
        "url": url_for("pages.run_detail", run_id=run.id),
        "workflow": run.workflow,
        "status": run.status,
        "outcome": asdict(told),
        "stages": _progress(graph, run, steps.stages),
        "duration_ms": duration_ms(run, now),
        "cost_usd": float(steps.cost_usd),
        "cost_usd_rounded": float(to_cents(steps.cost_usd)),
        "tokens": steps.tokens,
        "input_preview": input_preview(run.input),
        "created_at": run.created_at.isoformat(),
    }


def run_rows(runs: list[Run], now: datetime) -> list[dict[str, Any]]:
    steps = runs_steps(db(), [r.id for r in runs])
    graphs: dict[Any, Graph | None] = {}
    rows = []
    for run in runs:
        key = run.workflow_version_id or run.workflow
        if key not in graphs:
            graphs[key] = _graph(run)
        rows.append(run_row(run, steps[run.id], graphs[key], now))
    return rows


def _phase(p: Phase, origin: datetime) -> dict[str, Any]:
    return {
        "kind": p.kind,
        "label": PHASE_LABELS[p.kind],
        "start_ms": _ms(origin, p.start),
        "end_ms": _ms(origin, p.end),
        "ms": p.ms,
        "open": p.open,
    }


def _batch(share: BatchShare | None) -> dict[str, Any] | None:
    if share is None:
        return None
    calls = [
        {
            "id": str(c.id),
            "steps": c.step_count,
            "status": c.status,
            "latency_ms": c.latency_ms,
            "tokens_in": c.tokens_in,
            "tokens_out": c.tokens_out,
            "tokens_cached": c.tokens_cached,
            "cost_usd": float(c.cost_usd),
            "error": c.error,
            "repair": i > 0 and c.step_count == 1,
        }
        for i, c in enumerate(share.calls)
    ]
    return {
        "id": str(share.id),
        "size": share.size,
        "reason": share.reason,
        "steps_of_this_run": share.steps_of_this_run,
        "steps_of_other_runs": share.steps_of_other_runs,
        "other_runs": share.other_runs,
        "calls": calls,
        "repairs": sum(1 for c in calls if c["repair"]),
    }


def run_view(run: Run, steps: list[Step], now: datetime) -> dict[str, Any]:
    """The run page's data: the run as the API sends it, its outcome, its steps' phases on one time
    axis (milliseconds from the run's creation) with the batch each shared, and its place on its
    workflow's graph."""
    session = db()
    detail = run_json(run, steps)
    origin = run.created_at
    events = step_events(session, run.id)
    shares = batch_shares(session, run.id, sorted({s.batch_id for s in steps if s.batch_id}))
    graph = _graph(run)
    step_items = []
    for step, view in zip(steps, detail["steps"], strict=True):
        phases = step_phases(
            step.kind, step.queued_at, step.finished_at, step.status, events.get(str(step.id), []), now
        )
        step_items.append(
            {
                **view,
                "stage": step.stage,
                "kind": step.kind,
                "item": step.item,
                "phases": [_phase(p, origin) for p in phases],
                "phase_ms": phase_totals(phases),
                "batch": _batch(shares.get(step.batch_id)) if step.batch_id else None,
            }
        )
    detail["steps"] = step_items
    end = run.finished_at if run.status in FINAL_RUN_STATUSES and run.finished_at else now
    ends = [p["end_ms"] for s in step_items for p in s["phases"]]
    return {
        "run": detail,
        "outcome": asdict(outcome(run.status, run.error, run.output)),
        "duration_ms": duration_ms(run, now),
        "now": now.isoformat(),
        "axis_ms": max([_ms(origin, end), *ends]),
        "stages": _progress(graph, run, [StepStage(s.stage, s.status, s.seq) for s in steps]),
        "graph": graph.as_dict() if graph is not None else None,
    }
