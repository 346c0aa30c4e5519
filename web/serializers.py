"""Runs and steps as the API's response models (web/responses.py), shared by the API and the pages."""

from __future__ import annotations

import uuid
from typing import Any

from flask import url_for

from taskapp.store.models import Run, Step
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
            cost_usd=float(totals.cost_usd),
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
