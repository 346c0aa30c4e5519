"""JSON shapes of runs and steps, shared by the API and the pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for

from taskapp import store
from taskapp.models import Run, Step


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def step_json(step: Step) -> dict[str, Any]:
    wait_ms = int((step.started_at - step.queued_at).total_seconds() * 1000) if step.started_at else None
    latency_ms = (int((step.finished_at - step.started_at).total_seconds() * 1000)
                  if step.finished_at and step.started_at else None)
    return {
        "id": str(step.id), "seq": step.seq, "agent": step.agent, "model": step.model,
        "status": step.status, "input": step.input, "output": step.output, "error": step.error,
        "attempts": step.attempts, "batch_id": str(step.batch_id) if step.batch_id else None,
        "tokens_in": step.tokens_in, "tokens_out": step.tokens_out, "cost_usd": float(step.cost_usd),
        "wait_ms": wait_ms, "buffer_wait_ms": step.buffer_wait_ms, "latency_ms": latency_ms,
        "queued_at": _ts(step.queued_at), "started_at": _ts(step.started_at), "finished_at": _ts(step.finished_at),
    }


def run_summary_json(run: Run, progress: tuple[int, int] | None = None) -> dict[str, Any]:
    done, total = progress or (0, 0)
    return {
        "id": str(run.id), "workflow": run.workflow, "status": run.status,
        "created_at": _ts(run.created_at), "started_at": _ts(run.started_at),
        "finished_at": _ts(run.finished_at), "error": run.error,
        "progress": {"steps_done": done, "steps": total},
        "links": links(run),
    }


def run_json(run: Run, steps: list[Step]) -> dict[str, Any]:
    totals = store.run_totals(steps)
    body = run_summary_json(run, (totals.steps_done, totals.steps))
    body.update(
        input=run.input, options=run.options, output=run.output,
        totals={"steps": totals.steps, "steps_done": totals.steps_done, "tokens_in": totals.tokens_in,
                "tokens_out": totals.tokens_out, "cost_usd": float(totals.cost_usd),
                "llm_calls": totals.llm_calls},
        steps=[step_json(s) for s in steps],
    )
    return body


def links(run: Run) -> dict[str, str]:
    return {
        "self": url_for("api.get_run", run_id=run.id),
        "events": url_for("api.get_run", run_id=run.id) + "/events",
        "ui": url_for("pages.run_detail", run_id=run.id),
    }
