"""How a run reads to a person: its outcome in words, each step's time split into phases, and how
far along its workflow's stages it is. Pure functions of what the step rows and events hold.

- `outcome`: the run's status with its reason. A run that succeeded with an output saying
  `approved: false` (the research workflow's reviewer never approved) is "not approved", with
  its `revisions` when the output has them, never a plain "succeeded".
- `step_phases`: a step's events in order, as back-to-back phases: waiting in its agent's batch
  buffer (queued -> batched), the batch's message on its way to a worker (batched -> started),
  waiting for quota (`quota.wait` -> started), the Gemini or tool call (started -> finished),
  waiting to retry (`step.retrying` -> started again). A phase still open ends at `now`.
- `stage_progress`: stages done of the stages a run passes through (the longest path through
  the graph, loops left out), never going backwards (a loop back to an earlier stage does not
  undo the stages done) and never full before the run has ended.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from taskapp.domain.definitions.graph import INPUT, Graph
from taskapp.domain.status import FINAL_RUN_STATUSES, FINAL_STEP_STATUSES

Tone = Literal["ok", "warn", "bad", "neutral", "working"]
PhaseKind = Literal["buffer", "dispatch", "quota", "call", "tool", "retry", "queue"]
PHASE_LABELS: dict[str, str] = {
    "buffer": "waiting in the batch buffer to share a call",
    "dispatch": "batched, on its way to a worker",
    "quota": "waiting for quota",
    "call": "the Gemini call",
    "tool": "the tool call",
    "retry": "waiting to retry",
    "queue": "waiting for a tool worker",
}


@dataclass(frozen=True)
class Outcome:
    label: str  # a few words: "succeeded", "not approved after 2 revisions", "failed"
    tone: Tone
    reason: str | None = None  # the error, or what "not approved" means


def outcome(status: str, error: str | None, output: Mapping[str, Any] | None) -> Outcome:
    """The run's status as a person should read it."""
    if status == "succeeded":
        if output is not None and output.get("approved") is False:
            revisions = output.get("revisions")
            if isinstance(revisions, int) and not isinstance(revisions, bool):
                label = f"not approved after {revisions} revision{'' if revisions == 1 else 's'}"
            else:
                label = "not approved"
            review = output.get("review")
            reason = "The reviewer did not approve the last draft" + (f": {review}" if review else ".")
            return Outcome(label, "warn", reason)
        return Outcome("succeeded", "ok")
    if status == "failed":
        return Outcome("failed", "bad", error or "the run failed")
    if status == "cancelled":
        return Outcome("cancelled", "neutral", error or "cancelled before it finished")
    if status == "running":
        return Outcome("running", "working")
    return Outcome("queued", "working", "waiting for a worker to start it")


@dataclass(frozen=True)
class StepEvent:
    type: str
    ts: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase:
    kind: PhaseKind
    start: datetime
    end: datetime
    open: bool = False  # still going (ends at `now`)

    @property
    def ms(self) -> int:
        return max(0, int((self.end - self.start).total_seconds() * 1000))


def step_phases(
    kind: str,
    queued_at: datetime,
    finished_at: datetime | None,
    status: str,
    events: Sequence[StepEvent],
    now: datetime,
) -> list[Phase]:
    """The step's time from queued to finished (or `now`), as phases back to back."""
    waiting: PhaseKind = "queue" if kind == "tool" else "buffer"
    running: PhaseKind = "tool" if kind == "tool" else "call"
    after: dict[str, PhaseKind | None] = {
        "step.queued": waiting,
        "step.batched": "dispatch",
        "quota.wait": "quota",
        "step.started": running,
        "step.retrying": "retry",
        "step.succeeded": None,
        "step.failed": None,
    }
    phases: list[Phase] = []
    current: PhaseKind | None = waiting
    since = queued_at
    for event in sorted(events, key=lambda e: e.ts):
        if event.type not in after:
            continue
        nxt = after[event.type]
        if current is not None and nxt == current:
            continue  # another wait for quota: the same phase goes on
        at = max(event.ts, since)
        if current is not None:
            phases.append(Phase(current, since, at))
        since, current = at, nxt
    if current is not None:
        if status in FINAL_STEP_STATUSES:  # cancelled (no event of its own)
            phases.append(Phase(current, since, max(finished_at or since, since)))
        else:
            phases.append(Phase(current, since, max(now, since), open=True))
    return [p for p in phases if p.end > p.start or p.open]


def phase_totals(phases: Iterable[Phase]) -> dict[str, int]:
    """Milliseconds per phase kind."""
    totals: dict[str, int] = {}
    for p in phases:
        totals[p.kind] = totals.get(p.kind, 0) + p.ms
    return totals


def stage_ranks(graph: Graph) -> dict[str, int]:
    """Each stage's place (1, 2, ...) on the longest path from the input, loops left out: the stages
    a route chooses between share a place."""
    forward = [e for e in graph.edges if e.kind != "loop"]
    ranks: dict[str, int] = {INPUT: 0}
    for _ in graph.nodes:  # a DAG once loops are left out: relax at most once per node
        changed = False
        for e in forward:
            if e.source in ranks and ranks.get(e.target, -1) < ranks[e.source] + 1:
                ranks[e.target] = ranks[e.source] + 1
                changed = True
        if not changed:
            break
    return {n.id: ranks.get(n.id, 0) for n in graph.nodes if n.kind == "stage"}


@dataclass(frozen=True)
class StageProgress:
    done: int  # stages done (of `total`)
    total: int  # the stages this workflow's runs pass through
    states: dict[str, str]  # stage -> done | current | failed | pending | skipped
    current: str | None  # the stage working now (or where the run failed or was stopped)
    loops: int  # how often a loop went back to an earlier stage
    last_done: str | None = None  # the latest stage to finish (a run may fail after it, deciding the next)


@dataclass(frozen=True)
class StepStage:
    stage: str | None
    status: str
    seq: int


def stage_progress(graph: Graph, run_status: str, steps: Sequence[StepStage]) -> StageProgress:
    """Where the run is on its workflow: stages done of the stages known, never backwards."""
    ranks = stage_ranks(graph)
    total = max(ranks.values(), default=0)
    ordered = sorted((s for s in steps if s.stage in ranks), key=lambda s: s.seq)
    seen = {s.stage for s in ordered}
    latest = ordered[-1].stage if ordered else None
    loops = sum(
        1
        for a, b in zip(ordered, ordered[1:], strict=False)
        if a.stage != b.stage and ranks[str(b.stage)] <= ranks[str(a.stage)]
    )
    final = run_status in FINAL_RUN_STATUSES
    states: dict[str, str] = {}
    for stage in ranks:
        if stage not in seen:
            states[stage] = "skipped" if run_status == "succeeded" else "pending"
        elif stage != latest:
            states[stage] = "done"  # passed (a loop may come back to it)
        elif not final:
            states[stage] = "current"
        elif run_status == "succeeded" or (
            run_status == "failed" and all(s.status == "succeeded" for s in ordered if s.stage == stage)
        ):
            states[stage] = "done"  # (a failed run whose last stage succeeded failed deciding the next)
        else:
            states[stage] = "failed" if run_status == "failed" else "stopped"
    done = max((ranks[s] for s, state in states.items() if state == "done"), default=0)
    if run_status == "succeeded":
        done = total
    elif done >= total:
        done = max(0, total - 1)  # a loop may still go back: never full before the run ends
    current = latest if latest is not None and states[latest] != "done" else None
    last_done = next((s.stage for s in reversed(ordered) if states[str(s.stage)] == "done"), None)
    return StageProgress(done=done, total=total, states=states, current=current, loops=loops, last_done=last_done)


def input_preview(value: Mapping[str, Any], limit: int = 90) -> str:
    """The run's input in a line: its first text value (else its JSON), cut at `limit` characters."""
    text = next((v for v in value.values() if isinstance(v, str) and v.strip()), None)
    if text is None:
        text = json.dumps(dict(value), ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
