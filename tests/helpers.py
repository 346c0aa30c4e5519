"""Helpers the tests share: paths, teams, requests, waiting for runs. Fixtures live in conftest.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
# The session's worker nodes: a short batching window keeps multi-phase runs quick (the window
# itself is tested on its own), short leases and sweeps keep recovery tests short.
WORKER_ENV = {"BATCH_MAX_WAIT_MS": "200", "SWEEP_INTERVAL_S": "1", "RUN_NUDGE_AFTER_S": "2", "STEP_LEASE_S": "2"}

_TOKEN = re.compile(rb'name="csrf_token" value="([^"]+)"')


def make_team(settings, name: str | None = None) -> tuple[uuid.UUID, str]:
    """A team of its own for one test (tests never see each other's runs)."""
    from taskapp.store.db import session_factory
    from taskapp.store.teams import create_team

    with session_factory(settings).begin() as session:
        team, key = create_team(session, name or f"team-{uuid.uuid4().hex[:10]}")
        return team.id, key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit_summary(client, key: str, text: str, workflow: str = "summarize", **options) -> str:
    """Submit a one-step `summarize` run (or its variant sharing calls across teams) through the API; its id."""
    resp = client.post(
        "/api/runs", headers=auth(key), json={"workflow": workflow, "input": {"text": text}, "options": options}
    )
    assert resp.status_code == 202, resp.json
    return resp.json["id"]


def run_steps(db_session, run_ids: list[str]):
    """The steps of these runs, freshly read."""
    from sqlalchemy import select

    from taskapp.store.models import Step

    db_session.expire_all()
    return list(db_session.scalars(select(Step).where(Step.run_id.in_([uuid.UUID(str(r)) for r in run_ids]))))


def wait_for_run(settings, run_id: str | uuid.UUID, timeout_s: float = 60):
    """Poll Postgres until the run ends; return it with its steps loaded."""
    from sqlalchemy.orm import selectinload

    from taskapp.store.db import session_factory
    from taskapp.store.models import FINAL_RUN_STATUSES, Run

    deadline = time.monotonic() + timeout_s
    while True:
        with session_factory(settings)() as session:
            run = session.get(Run, uuid.UUID(str(run_id)), options=[selectinload(Run.steps)])
            if run is not None and run.status in FINAL_RUN_STATUSES:
                return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not finish in {timeout_s}s (status {run and run.status})")
        time.sleep(0.1)


def claim_steps(session, batch_id, step_ids, lease_s, max_attempts=None):
    """What a delivery of a batch does to claim its steps (as taskapp.pipeline.executor does)."""
    from taskapp.store.claims import claim, claimable

    return claim(session, batch_id, claimable(session, batch_id, step_ids), lease_s, max_attempts)


def parse_sse(body: bytes) -> list[dict]:
    """The events of an SSE body (comments and retry lines skipped)."""
    events = []
    for block in body.decode().split("\n\n"):
        fields: dict = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = fields.get(name, "") + value.lstrip(" ") if name == "data" else value.lstrip(" ")
        if "id" in fields:
            events.append({"id": int(fields["id"]), "type": fields.get("event"), "data": json.loads(fields["data"])})
    return events


def stored_events(db_session, run_id) -> list[tuple[int, str]]:
    """A run's events as stored: (id, type), in id order."""
    from sqlalchemy import select

    from taskapp.store.models import Event

    db_session.rollback()
    rows = db_session.execute(
        select(Event.id, Event.type).where(Event.run_id == uuid.UUID(str(run_id))).order_by(Event.id)
    ).all()
    return [(i, t) for i, t in rows]


def form_token(page: bytes) -> str:
    """The CSRF token a rendered page put in its forms, as a browser would post it back."""
    found = _TOKEN.search(page)
    assert found, "the page has no form token"
    return found.group(1).decode()


def ui_login(client, key: str):
    """Sign a test client in through the login form; the answer to the post."""
    token = form_token(client.get("/login").data)
    return client.post("/login", data={"api_key": key, "csrf_token": token})


def next_db(url: str | None) -> str | None:
    """The Redis URL's next db number: a stack of its own beside the session's (None: embedded)."""
    if not url:
        return None
    match = re.match(r"^(.*/)(\d+)$", url)
    return f"{match.group(1)}{(int(match.group(2)) + 1) % 16}" if match else url


def taskapp_cli(stack, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    """Run the `taskapp` command as a deployer would, with the test stack's environment."""
    return subprocess.run(
        [sys.executable, "-m", "taskapp.cli", *args], env=stack.env(**env), capture_output=True, text=True, timeout=60
    )


def app_with(settings, **changes):
    """A fresh web app on the test settings with `changes` (each test its own, as a process would)."""
    from web import create_app

    app = create_app(settings.model_copy(update=changes))
    app.config.update(TESTING=True)
    return app


def assert_error(resp, status: int, code: str) -> dict:
    """The documented shape: {"error": {"code", "message", "details"}}."""
    shown = b"(a stream)" if resp.mimetype == "text/event-stream" else resp.data[:300]
    assert resp.status_code == status, (resp.status_code, shown)
    error = resp.json["error"]
    assert error["code"] == code and error["message"] and "details" in error
    return error


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "workflows"
MODELS = ("gemini-2.5-flash", "gemini-2.5-flash-lite")


def example(name: str):
    """A shipped example definition, checked as the deployer's files are (its tools registered)."""
    from taskapp.catalog.files import load_path

    return {d.name: d for d in load_path(str(EXAMPLES), models=MODELS)}[name]


def check(document: dict, *, shared: bool = False, tools=None):
    """check_definition with this test suite's served models (and no tools unless given)."""
    from taskapp.domain.definitions.checks import check_definition

    return check_definition(document, models=MODELS, tools=tools or {}, shared=shared)


TOOL_WORKFLOWS = ROOT / "tests" / "workflows"  # tool_check.yaml and its test tools (tools.py)


def tool_check_definition(models: list[str]):
    """The tool tests' workflow, checked (loading it registers its tools in this process)."""
    from taskapp.catalog.files import load_path

    return next(d for d in load_path(str(TOOL_WORKFLOWS), models=models) if d.name == "tool_check")


def make_tool_step(factory, team_id, definition, tool: str, arguments) -> tuple[uuid.UUID, uuid.UUID]:
    """A running run pinned to `definition`, whose agent asked for one call of `tool`: the agent
    step (succeeded, its output the call) and the tool step, queued, as the orchestrator stores
    them. Returns (run id, tool step id)."""
    from datetime import UTC, datetime

    from taskapp.domain.agents import lane_of
    from taskapp.domain.engine import step_key
    from taskapp.store import workflows
    from taskapp.store.models import Step
    from taskapp.store.runs import create_run

    now = datetime.now(UTC)
    agent, stage = definition.first_agent, definition.spec.stages[0].name
    call = {"tool": tool, "arguments": arguments}
    with factory.begin() as session:
        version, _ = workflows.push(session, team_id, definition)
        run, _ = create_run(
            session,
            team_id=team_id,
            workflow=definition.name,
            input={"text": "t"},
            options={},
            workflow_version_id=version.id,
        )
        run.status, run.started_at = "running", now
        common = {"run_id": run.id, "stage": stage, "item": 0}
        session.add(
            Step(
                id=step_key(run.id, 1),
                seq=1,
                agent=agent.name,
                model=agent.model,
                status="succeeded",
                input={"text": "t"},
                output={"tool_calls": [call]},
                kind="agent",
                lane=lane_of(agent, str(team_id)),
                finished_at=now,
                **common,
            )
        )
        session.add(
            Step(
                id=step_key(run.id, 2),
                seq=2,
                agent=tool,
                model="tool",
                status="queued",
                input={**call, "asked_by": 1},
                kind="tool",
                **common,
            )
        )
        return run.id, step_key(run.id, 2)


def step_events(db_session, step_id) -> list[dict]:
    """A step's events as stored: each one's data, with its type, in id order."""
    from sqlalchemy import select

    from taskapp.store.models import Event

    db_session.rollback()
    rows = db_session.execute(
        select(Event.type, Event.data).where(Event.data["step_id"].astext == str(step_id)).order_by(Event.id)
    ).all()
    return [{"type": t, **d} for t, d in rows]


def calls_logged(path) -> int:
    """How often a test tool ran (tests/workflows/tools.py writes a line per call)."""
    return len(Path(path).read_text(encoding="utf-8").splitlines()) if Path(path).exists() else 0
