"""How a run reads to a person (taskapp.domain.run_view): the outcome in words, each step's phases,
and stage progress that never goes backwards and is never full before the run ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskapp.domain.definitions.graph import Edge, Graph, Node
from taskapp.domain.run_view import StepEvent, StepStage, input_preview, outcome, stage_progress, step_phases

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def test_a_run_the_reviewer_never_approved_is_not_shown_as_a_plain_success():
    told = outcome("succeeded", None, {"approved": False, "revisions": 2, "review": "too vague"})
    assert (told.label, told.tone) == ("not approved after 2 revisions", "warn")
    assert "too vague" in (told.reason or "")
    assert outcome("succeeded", None, {"approved": False, "revisions": 1}).label == "not approved after 1 revision"
    assert outcome("succeeded", None, {"approved": True, "revisions": 0}).label == "succeeded"
    assert outcome("succeeded", None, {"summary": "x"}).tone == "ok"
    failed = outcome("failed", "token budget exceeded", None)
    assert (failed.label, failed.tone, failed.reason) == ("failed", "bad", "token budget exceeded")
    assert outcome("cancelled", None, None).tone == "neutral"


def test_a_steps_events_become_back_to_back_phases():
    events = [
        StepEvent("step.batched", at(3000), {"batch_size": 4}),
        StepEvent("quota.wait", at(3100), {"wait_s": 1.0}),
        StepEvent("quota.wait", at(3600), {"wait_s": 0.5}),  # the same wait goes on
        StepEvent("step.started", at(4200)),
        StepEvent("step.retrying", at(4500)),
        StepEvent("step.started", at(5500)),
        StepEvent("step.succeeded", at(5700)),
    ]
    phases = step_phases("agent", at(0), at(5700), "succeeded", events, now=at(9999))
    assert [(p.kind, p.ms) for p in phases] == [
        ("buffer", 3000),
        ("dispatch", 100),
        ("quota", 1100),
        ("call", 300),
        ("retry", 1000),
        ("call", 200),
    ]
    assert not any(p.open for p in phases)


def test_a_phase_still_going_ends_now_and_says_so():
    phases = step_phases("agent", at(0), None, "batched", [StepEvent("step.batched", at(500))], now=at(800))
    assert [(p.kind, p.ms, p.open) for p in phases] == [("buffer", 500, False), ("dispatch", 300, True)]
    tool = step_phases("tool", at(0), None, "running", [StepEvent("step.started", at(10))], now=at(60))
    assert [p.kind for p in tool] == ["queue", "tool"]


def test_a_cancelled_step_ends_at_its_finish_without_an_event_of_its_own():
    phases = step_phases("agent", at(0), at(700), "cancelled", [], now=at(5000))
    assert [(p.kind, p.ms, p.open) for p in phases] == [("buffer", 700, False)]


# planner -> researcher -> writer -> reviewer (loop back to writer)
RESEARCH = Graph(
    nodes=(
        Node("_input", "input", "input"),
        Node("planner", "stage", "planner"),
        Node("researcher", "stage", "researcher"),
        Node("writer", "stage", "writer"),
        Node("reviewer", "stage", "reviewer"),
        Node("_output", "output", "output"),
    ),
    edges=(
        Edge("_input", "planner", "next", ""),
        Edge("planner", "researcher", "fan_out", ""),
        Edge("researcher", "writer", "next", ""),
        Edge("writer", "reviewer", "next", ""),
        Edge("reviewer", "writer", "loop", ""),
        Edge("reviewer", "_output", "next", ""),
    ),
)


def test_stage_progress_never_goes_backwards_through_a_loop_and_is_full_only_at_the_end():
    done = []
    steps: list[StepStage] = []
    plan = [("planner", 1), ("researcher", 3), ("writer", 1), ("reviewer", 1), ("writer", 1), ("reviewer", 1)]
    for stage, count in plan:
        for _ in range(count):
            steps.append(StepStage(stage, "running", len(steps)))
        done.append(stage_progress(RESEARCH, "running", steps).done)
        steps = [StepStage(s.stage, "succeeded", s.seq) for s in steps]
        done.append(stage_progress(RESEARCH, "running", steps).done)
    assert done == sorted(done), f"progress went backwards: {done}"
    assert max(done) == 3  # 3 of 4 while running, whatever the loop did
    end = stage_progress(RESEARCH, "succeeded", steps)
    assert (end.done, end.total, end.loops) == (4, 4, 1)
    assert end.states == {"planner": "done", "researcher": "done", "writer": "done", "reviewer": "done"}


def test_a_failed_run_shows_where_it_stopped():
    steps = [StepStage("planner", "succeeded", 0), StepStage("researcher", "failed", 1)]
    failed = stage_progress(RESEARCH, "failed", steps)
    assert (failed.done, failed.total, failed.current) == (1, 4, "researcher")
    assert failed.states["researcher"] == "failed" and failed.states["writer"] == "pending"
    # A step limit hit deciding what follows the planner: the planner is done, the run failed after it.
    after = stage_progress(RESEARCH, "failed", steps[:1])
    assert (after.done, after.current, after.last_done, after.states["planner"]) == (1, None, "planner", "done")
    cancelled = stage_progress(RESEARCH, "cancelled", steps[:1] + [StepStage("researcher", "cancelled", 1)])
    assert cancelled.states["researcher"] == "stopped"


def test_routes_share_a_place_so_a_routed_run_can_finish_all_its_stages():
    graph = Graph(
        nodes=(
            Node("_input", "input", "input"),
            Node("classify", "stage", "classify"),
            Node("billing", "stage", "billing"),
            Node("tech", "stage", "tech"),
            Node("review", "stage", "review"),
            Node("_output", "output", "output"),
        ),
        edges=(
            Edge("_input", "classify", "next", ""),
            Edge("classify", "billing", "route", ""),
            Edge("classify", "tech", "route", ""),
            Edge("billing", "review", "next", ""),
            Edge("tech", "review", "next", ""),
            Edge("review", "_output", "next", ""),
        ),
    )
    steps = [StepStage("classify", "succeeded", 0), StepStage("tech", "succeeded", 1)]
    mid = stage_progress(graph, "running", steps)
    assert (mid.done, mid.total) == (1, 3)
    end = stage_progress(graph, "succeeded", [*steps, StepStage("review", "succeeded", 2)])
    assert (end.done, end.total, end.states["billing"]) == (3, 3, "skipped")


def test_the_input_preview_is_one_short_line():
    assert input_preview({"question": "  How do\n tides work?  "}) == "How do tides work?"
    assert len(input_preview({"text": "x" * 500})) == 90
    assert input_preview({"n": 3}) == '{"n": 3}'
