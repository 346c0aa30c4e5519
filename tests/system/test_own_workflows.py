"""A team's own workflow, end to end: pushed over the API, run from the API, the UI and the CLI on
real workers, every step and tool call visible, and runs pinned to the version they started with."""

from __future__ import annotations

import copy
import json
import uuid

from sqlalchemy import select

from taskapp.store.models import Run, Step
from tests.helpers import auth, form_token, make_team, taskapp_cli, ui_login, wait_for_run

# Three agents and a tool the deployer registered (examples/workflows/tools.py: lookup_order).
ORDER_CHECK = {
    "name": "order_check",
    "description": "Read a customer's note, look the order up, write the answer.",
    "input_schema": {
        "type": "object",
        "properties": {
            "note": {"title": "Note", "type": "string", "minLength": 3, "maxLength": 2000},
            "order_id": {"title": "Order", "type": "string", "maxLength": 20},
        },
        "required": ["note", "order_id"],
    },
    "agents": {
        "reader": {
            "model": "gemini-2.5-flash-lite",
            "system_prompt": "Say what the customer wants to know about their order.",
            "output_schema": {
                "type": "object",
                "properties": {"question": {"type": "string", "minLength": 1}},
                "required": ["question"],
            },
        },
        "checker": {
            "model": "gemini-2.5-flash",
            "system_prompt": "Look the order up with lookup_order and state the facts that answer the question.",
            "tools": ["lookup_order"],
            "output_schema": {
                "type": "object",
                "properties": {"facts": {"type": "string", "minLength": 1}},
                "required": ["facts"],
            },
        },
        "writer": {
            "model": "gemini-2.5-flash-lite",
            "system_prompt": "Write a short, friendly answer from the facts.",
            "output_schema": {
                "type": "object",
                "properties": {"answer": {"type": "string", "minLength": 1}},
                "required": ["answer"],
            },
        },
    },
    "stages": [
        {"name": "read", "agent": "reader", "input": {"note": "input.note"}},
        {
            "name": "check",
            "agent": "checker",
            "input": {"question": "outputs.read.question", "order_id": "input.order_id"},
        },
        {"name": "write", "agent": "writer", "input": {"facts": "outputs.check.facts"}},
    ],
    "output": {
        "from": {"answer": "outputs.write.answer", "facts": "outputs.check.facts"},
        "schema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
    },
}
NOTE = {"note": "Where is my parcel? It should be here by now.", "order_id": "A-1001"}


def push(client, key: str, document: dict) -> dict:
    resp = client.put(f"/api/workflows/{document['name']}", headers=auth(key), json=document)
    assert resp.status_code in (200, 201), resp.json
    return resp.json


def steps_of(db_session, run_id) -> list[Step]:
    db_session.expire_all()
    return list(db_session.scalars(select(Step).where(Step.run_id == uuid.UUID(str(run_id))).order_by(Step.seq)))


def test_a_team_pushes_its_own_workflow_with_a_tool_and_runs_it_from_the_api_ui_and_cli(
    client, workers, settings, db_session, stack
):
    team_id, key = make_team(settings)
    name = f"order_check_{uuid.uuid4().hex[:6]}"
    document = copy.deepcopy(ORDER_CHECK) | {"name": name}
    assert push(client, key, document)["version"] == 1

    # The API.
    resp = client.post("/api/runs", headers=auth(key), json={"workflow": name, "input": NOTE})
    assert resp.status_code == 202, resp.json
    api_run = wait_for_run(settings, resp.json["id"])
    assert api_run.status == "succeeded", api_run.error
    steps = steps_of(db_session, api_run.id)
    assert [(s.stage, s.kind) for s in steps] == [
        ("read", "agent"),
        ("check", "agent"),  # asks for lookup_order
        ("check", "tool"),
        ("check", "agent"),  # again, with the result
        ("write", "agent"),
    ]
    tool = steps[2]
    assert tool.agent == "lookup_order" and tool.input["arguments"]["order_id"] == "A-1001"
    assert tool.output["result"]["order_id"] == "A-1001"  # the shipped order book's order
    assert steps[3].input["tool_results"][0]["result"] == tool.output["result"]
    assert api_run.output["answer"] and api_run.output["facts"]
    shown = client.get(f"/api/runs/{api_run.id}", headers=auth(key)).json
    assert [s["agent"] for s in shown["steps"]] == ["reader", "checker", "lookup_order", "checker", "writer"]
    assert shown["output"] == api_run.output

    # The UI: the form built from the input schema, then the run page.
    csrf = ui_login(client, key)
    form = client.get(f"/runs/new?workflow={name}")
    assert form.status_code == 200 and b'name="note"' in form.data and b'name="order_id"' in form.data
    posted = client.post("/runs/new", data={"workflow": name, "csrf_token": form_token(form.data) or csrf, **NOTE})
    assert posted.status_code == 302, posted.data[:500]
    ui_run_id = posted.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    assert wait_for_run(settings, ui_run_id).status == "succeeded"
    assert b"lookup_order" in client.get(f"/runs/{ui_run_id}").data

    # The CLI, against a real web server.
    url, web = stack.start_web()
    try:
        done = taskapp_cli(
            stack,
            "submit",
            name,
            "--input",
            json.dumps(NOTE),
            "--follow",
            TASKAPP_API_URL=url,
            TASKAPP_API_KEY=key,
        )
    finally:
        stack.stop(web)
    assert done.returncode == 0, done.stderr
    cli_run_id, _, output = done.stdout.partition("\n")
    assert json.loads(output) == wait_for_run(settings, uuid.UUID(cli_run_id)).output
    assert "lookup_order" in done.stderr  # the tool call's progress, as each step's


def test_a_version_pushed_mid_run_leaves_the_running_run_on_its_version(client, workers, settings, db_session):
    team_id, key = make_team(settings)
    name = f"pinned_{uuid.uuid4().hex[:6]}"
    first = copy.deepcopy(ORDER_CHECK) | {"name": name}
    push(client, key, first)
    started = client.post(
        "/api/runs", headers=auth(key), json={"workflow": name, "input": NOTE, "options": {"priority": "batch"}}
    ).json["id"]

    # Version 2 drops the tool and adds a stage, while the first run is under way.
    second = copy.deepcopy(first)
    del second["agents"]["checker"]["tools"]
    second["stages"].append({"name": "polish", "agent": "writer", "input": {"facts": "outputs.write.answer"}})
    second["output"]["from"]["answer"] = "outputs.polish.answer"
    assert push(client, key, second)["version"] == 2
    later = client.post("/api/runs", headers=auth(key), json={"workflow": name, "input": NOTE}).json["id"]
    pinned = client.post("/api/runs", headers=auth(key), json={"workflow": name, "version": 1, "input": NOTE}).json[
        "id"
    ]

    for run_id in (started, later, pinned):
        assert wait_for_run(settings, run_id).status == "succeeded"
    assert [s.stage for s in steps_of(db_session, started)] == ["read", "check", "check", "check", "write"]
    assert [s.stage for s in steps_of(db_session, pinned)] == ["read", "check", "check", "check", "write"]
    assert [s.stage for s in steps_of(db_session, later)] == ["read", "check", "write", "polish"]
    versions = {
        str(r.id): r.workflow_version_id
        for r in db_session.scalars(select(Run).where(Run.id.in_([uuid.UUID(x) for x in (started, later, pinned)])))
    }
    assert versions[started] == versions[pinned] != versions[later]
    assert client.get(f"/api/runs/{started}", headers=auth(key)).json["workflow_version"] == 1
    assert client.get(f"/api/runs/{later}", headers=auth(key)).json["workflow_version"] == 2
