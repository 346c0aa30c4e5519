"""The workflows API on real PostgreSQL and Redis (the Flask app through its test client): a team
pushes its own definitions as versions, lists and reads them, runs a version, retires a name;
another team never sees any of it; every bad definition is a 422 naming its path, and nothing
is stored. A web process with a bad shared file refuses to start (a real gunicorn)."""

from __future__ import annotations

import copy
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
import yaml
from sqlalchemy import func, select

from tests.helpers import ROOT, app_with, assert_error, auth, make_team

EXAMPLES = ROOT / "examples" / "workflows"
SCHEMA_FILE = ROOT / "docs" / "workflow.schema.json"

# A team's own three-agent workflow: a classifier routes to one of two specialist stages, and a
# reviewer may send the reply round again (a bounded loop).
TRIAGE: dict[str, Any] = {
    "name": "triage",
    "description": "Classify a ticket, hand it to a specialist, review the reply.",
    "input_schema": {
        "type": "object",
        "properties": {"ticket": {"type": "string", "minLength": 1, "maxLength": 2000}},
        "required": ["ticket"],
        "additionalProperties": False,
    },
    "agents": {
        "classifier": {
            "model": "gemini-2.5-flash-lite",
            "description": "Says what a ticket is about.",
            "system_prompt": "Classify the ticket.",
            "output_schema": {
                "type": "object",
                "properties": {"category": {"type": "string", "enum": ["billing", "tech"]}},
                "required": ["category"],
            },
        },
        "specialist": {
            "model": "gemini-2.5-flash",
            "system_prompt": "Answer the ticket.",
            "output_schema": {"type": "object", "properties": {"reply": {"type": "string"}}, "required": ["reply"]},
        },
        "reviewer": {
            "model": "gemini-2.5-flash-lite",
            "system_prompt": "Approve the reply or send it back.",
            "output_schema": {
                "type": "object",
                "properties": {"approved": {"type": "boolean"}, "notes": {"type": "string"}},
                "required": ["approved"],
            },
        },
    },
    "stages": [
        {
            "name": "classify",
            "agent": "classifier",
            "input": {"ticket": "input.ticket"},
            "route": {"on": "outputs.classify.category", "cases": {"billing": "billing", "tech": "tech"}},
        },
        {"name": "billing", "agent": "specialist", "input": {"ticket": "input.ticket"}, "next": "review"},
        {"name": "tech", "agent": "specialist", "input": {"ticket": "input.ticket"}},
        {
            "name": "review",
            "agent": "reviewer",
            "input": {"reply": "outputs.billing.reply || outputs.tech.reply"},
            "loop": {"to": "review", "while": "!(outputs.review.approved)", "max": 2},
        },
    ],
    "output": {"from": {"reply": "outputs.billing.reply || outputs.tech.reply"}},
}
TICKET = {"ticket": "I was charged twice."}


def triage(change: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    document = copy.deepcopy(TRIAGE)
    if change is not None:
        change(document)
    return document


def put(client, key: str, document: Any, name: str = "triage"):
    return client.put(f"/api/workflows/{name}", headers=auth(key), json=document)


def stored_versions(db_session, team_id: uuid.UUID, name: str) -> int:
    from taskapp.store.models import Workflow, WorkflowVersion

    db_session.rollback()
    return db_session.scalar(
        select(func.count())
        .select_from(WorkflowVersion)
        .join(Workflow, Workflow.id == WorkflowVersion.workflow_id)
        .where(Workflow.team_id == team_id, Workflow.name == name)
    )


def test_a_push_is_version_1_the_same_again_no_new_version_and_a_change_version_2(client, team, db_session):
    """201 with the new version; the same definition (JSON or YAML, name given or not) is 200 with the
    latest; a changed one is version 2. Versions are numbered per team and name."""
    team_id, key = team
    unnamed = triage(lambda d: d.pop("name"))
    first = put(client, key, unnamed)
    assert first.status_code == 201, first.json
    assert first.json["name"] == "triage" and first.json["version"] == 1 and first.json["scope"] == "team"
    assert len(first.json["content_hash"]) == 64 and first.json["created_at"]
    assert first.headers["Location"] == "/api/workflows/triage/versions/1"

    again = put(client, key, triage())
    assert again.status_code == 200 and again.json == first.json
    as_yaml = client.put(
        "/api/workflows/triage",
        headers={**auth(key), "Content-Type": "application/yaml"},
        data=yaml.safe_dump(triage(), sort_keys=False),
    )
    assert as_yaml.status_code == 200 and as_yaml.json["version"] == 1, as_yaml.json
    assert stored_versions(db_session, team_id, "triage") == 1

    changed = put(client, key, triage(lambda d: d.update(description="Now with a new description.")))
    assert changed.status_code == 201 and changed.json["version"] == 2
    assert changed.json["content_hash"] != first.json["content_hash"]
    assert stored_versions(db_session, team_id, "triage") == 2


def test_the_list_shows_own_and_shared_workflows_with_agents_input_schema_and_graph(client, team):
    """GET /api/workflows: the team's own (scope team) and the deployer's examples (scope shared)."""
    _, key = team
    put(client, key, triage())
    put(client, key, triage(lambda d: d.update(description="v2")))
    listed = client.get("/api/workflows", headers=auth(key))
    assert listed.status_code == 200
    by_name = {w["name"]: w for w in listed.json["workflows"]}
    assert {"triage", "research", "summarize"} <= set(by_name)
    own = by_name["triage"]
    assert own["scope"] == "team" and own["version"] == 2 and own["description"] == "v2"
    assert own["input_schema"] == TRIAGE["input_schema"]
    assert [(a["name"], a["model"]) for a in own["agents"]] == [
        ("classifier", "gemini-2.5-flash-lite"),
        ("specialist", "gemini-2.5-flash"),
        ("reviewer", "gemini-2.5-flash-lite"),
    ]
    edges = {(e["source"], e["target"], e["kind"]): e for e in own["graph"]["edges"]}
    assert edges[("classify", "billing", "route")]["value"] == "billing"
    assert edges[("classify", "tech", "route")]["value"] == "tech"
    assert ("classify", "billing", "next") not in edges  # a route replaces the next stage
    assert ("billing", "review", "next") in edges and ("tech", "review", "next") in edges
    assert edges[("review", "review", "loop")]["max"] == 2
    assert ("review", "_output", "next") in edges
    assert by_name["research"]["scope"] == "shared"
    fan_out = [e for e in by_name["research"]["graph"]["edges"] if e["kind"] == "fan_out"]
    assert [(e["source"], e["target"], e["max"]) for e in fan_out] == [("planner", "researcher", 4)]


def test_one_workflow_has_its_current_definition_and_every_version(client, team):
    """GET /api/workflows/NAME: the latest version in full and the versions newest first; a version by
    number; what GET gives can be PUT back unchanged (no new version)."""
    _, key = team
    v1 = put(client, key, triage()).json
    v2 = put(client, key, triage(lambda d: d.update(description="v2"))).json
    one = client.get("/api/workflows/triage", headers=auth(key))
    assert one.status_code == 200
    body = one.json
    assert body["version"] == 2 and body["content_hash"] == v2["content_hash"] and body["scope"] == "team"
    assert body["definition"]["description"] == "v2" and body["definition"]["name"] == "triage"
    assert body["definition"]["agents"]["reviewer"]["temperature"] == 0.2  # stored normalised: defaults spelt out
    assert body["tools"] == [] and body["graph"]["nodes"][0]["id"] == "_input"
    assert [(v["version"], v["content_hash"]) for v in body["versions"]] == [
        (2, v2["content_hash"]),
        (1, v1["content_hash"]),
    ]
    first = client.get("/api/workflows/triage/versions/1", headers=auth(key))
    assert first.status_code == 200 and first.json["version"] == 1
    assert first.json["definition"]["description"] == TRIAGE["description"]
    missing = assert_error(client.get("/api/workflows/triage/versions/3", headers=auth(key)), 404, "not_found")
    assert "no version 3" in missing["message"]
    back = put(client, key, body["definition"])
    assert back.status_code == 200 and back.json["version"] == 2
    shared = client.get("/api/workflows/research", headers=auth(key))
    assert shared.status_code == 200 and shared.json["scope"] == "shared"


def test_another_team_can_neither_see_nor_run_nor_retire_a_teams_workflow(client, settings, team):
    """Team B gets the same 404 for team A's name as for a name nobody uses, and its own push of that
    name is a workflow of its own, numbered from 1."""
    _, key_a = team
    _, key_b = make_team(settings)
    put(client, key_a, triage())
    put(client, key_a, triage(lambda d: d.update(description="v2")))
    names_b = [w["name"] for w in client.get("/api/workflows", headers=auth(key_b)).json["workflows"]]
    assert "triage" not in names_b and "research" in names_b
    for path in ("/api/workflows/triage", "/api/workflows/triage/versions/1"):
        theirs = assert_error(client.get(path, headers=auth(key_b)), 404, "not_found")
        nobodys = assert_error(client.get(path.replace("triage", "nobody"), headers=auth(key_b)), 404, "not_found")
        assert theirs["message"] == nobodys["message"].replace("nobody", "triage")  # nothing tells them apart
    run = client.post("/api/runs", headers=auth(key_b), json={"workflow": "triage", "input": TICKET})
    assert "unknown workflow 'triage'" in assert_error(run, 422, "invalid_input")["message"]
    assert_error(client.delete("/api/workflows/triage", headers=auth(key_b)), 404, "not_found")
    assert client.get("/api/workflows/triage", headers=auth(key_a)).json["version"] == 2  # untouched
    own_b = put(client, key_b, triage(lambda d: d.update(description="team B's own")))
    assert own_b.status_code == 201 and own_b.json["version"] == 1
    assert client.get("/api/workflows/triage", headers=auth(key_a)).json["definition"]["description"] == "v2"


def test_retiring_stops_new_runs_while_a_run_started_before_keeps_its_version(client, team, db_session):
    """DELETE: 204, no longer listed, new runs 422; a run created before keeps its workflow_version_id
    and still reads as version 1. A second DELETE is 204 too; pushing again makes version 2."""
    from taskapp.store.models import Run, WorkflowVersion

    _, key = team
    put(client, key, triage())
    created = client.post("/api/runs", headers=auth(key), json={"workflow": "triage", "input": TICKET})
    assert created.status_code == 202, created.json
    assert created.json["workflow_version"] == 1
    run_id = created.json["id"]
    db_session.rollback()
    pinned = db_session.get(Run, uuid.UUID(run_id)).workflow_version_id
    assert pinned is not None and db_session.get(WorkflowVersion, pinned).version == 1

    gone = client.delete("/api/workflows/triage", headers=auth(key))
    assert gone.status_code == 204 and gone.data == b""
    names = [w["name"] for w in client.get("/api/workflows", headers=auth(key)).json["workflows"]]
    assert "triage" not in names
    assert_error(client.get("/api/workflows/triage", headers=auth(key)), 404, "not_found")
    refused = client.post("/api/runs", headers=auth(key), json={"workflow": "triage", "input": TICKET})
    assert_error(refused, 422, "invalid_input")
    db_session.expire_all()
    assert db_session.get(Run, uuid.UUID(run_id)).workflow_version_id == pinned
    still = client.get(f"/api/runs/{run_id}", headers=auth(key))
    assert still.status_code == 200 and still.json["workflow_version"] == 1
    assert client.get("/api/runs", headers=auth(key)).json["runs"][0]["workflow_version"] == 1
    assert client.delete("/api/workflows/triage", headers=auth(key)).status_code == 204

    back = put(client, key, triage())
    assert back.status_code == 201 and back.json["version"] == 2
    assert client.post("/api/runs", headers=auth(key), json={"workflow": "triage", "input": TICKET}).status_code == 202


def test_names_and_versions_no_workflow_can_have_are_404_before_any_query(client, team):
    """A NUL or a capital in a name, a version past PostgreSQL's integer: never a database error."""
    _, key = team
    h = auth(key)
    put(client, key, triage())
    for path in ("/api/workflows/tri%00age", "/api/workflows/Triage", "/api/workflows/" + "t" * 64):
        assert_error(client.get(path, headers=h), 404, "not_found")
        assert_error(client.get(path + "/versions/1", headers=h), 404, "not_found")
        assert_error(client.delete(path, headers=h), 404, "not_found")
    for number in (0, 2**31, 2**63):
        assert_error(client.get(f"/api/workflows/triage/versions/{number}", headers=h), 404, "not_found")
    nul = assert_error(put(client, key, triage(lambda d: d.pop("name")), name="tri%00age"), 422, "invalid_definition")
    assert nul["details"][0]["path"] == "name"


def test_a_shared_workflow_cannot_be_retired_by_a_team_and_an_unknown_one_is_404(client, team):
    _, key = team
    error = assert_error(client.delete("/api/workflows/research", headers=auth(key)), 403, "forbidden")
    assert "shared" in error["message"]
    assert client.get("/api/workflows/research", headers=auth(key)).status_code == 200
    assert_error(client.delete("/api/workflows/nobody", headers=auth(key)), 404, "not_found")


def test_a_run_names_a_version_and_its_input_is_checked_against_that_version(client, team):
    """POST /api/runs with "version": that version's input schema, and the run is pinned to it; without
    one, the latest; an unknown version is a 422 that says so, never a queued run."""
    _, key = team
    put(client, key, triage())
    with_lang = triage(
        lambda d: (
            d["input_schema"]["properties"].update(language={"type": "string", "enum": ["en", "fr"]}),
            d["input_schema"]["required"].append("language"),
        )
    )
    assert put(client, key, with_lang).json["version"] == 2

    def submit(**body: Any):
        return client.post("/api/runs", headers=auth(key), json={"workflow": "triage", "input": TICKET, **body})

    on_v1 = submit(version=1)
    assert on_v1.status_code == 202 and on_v1.json["workflow_version"] == 1
    latest = assert_error(submit(), 422, "invalid_input")  # version 2 needs a language
    assert any(d["field"] == "language" or "language" in d["message"] for d in latest["details"])
    on_v2 = client.post(
        "/api/runs",
        headers=auth(key),
        json={"workflow": "triage", "input": {**TICKET, "language": "fr"}},
    )
    assert on_v2.status_code == 202 and on_v2.json["workflow_version"] == 2
    unknown = assert_error(submit(version=3), 422, "invalid_input")
    assert "no version 3" in unknown["message"]
    assert_error(submit(version=0), 422, "invalid_request")
    assert_error(submit(version="one"), 422, "invalid_request")
    runs = client.get("/api/runs", headers=auth(key)).json["runs"]
    assert sorted(r["workflow_version"] for r in runs) == [1, 2]  # nothing else was queued


def _prompt_too_long(d: dict[str, Any]) -> None:
    d["agents"]["specialist"]["system_prompt"] = "x" * 20_001


BAD_DEFINITIONS = {
    "unknown agent": (lambda d: d["stages"][1].update(agent="ghost"), "stages.1.agent", "no agent 'ghost'"),
    "backward next (a cycle without a bound)": (
        lambda d: d["stages"][3].update(next="classify"),
        "stages.3.next",
        "only a loop, which has a bound, may go back",
    ),
    "a keyword Gemini rejects": (
        lambda d: d["agents"]["specialist"].update(
            output_schema={"type": "object", "properties": {"reply": {"not": {"type": "number"}}}}
        ),
        "agents.specialist.output_schema.properties.reply.not",
        "'not'",
    ),
    "a root that is not an object": (
        lambda d: d["agents"]["classifier"].update(output_schema={"type": "array", "items": {"type": "string"}}),
        "agents.classifier.output_schema",
        "object",
    ),
    "a field that cannot exist": (
        lambda d: d["stages"][3]["input"].update(reply="outputs.classify.nope"),
        "stages.3.input.reply",
        "no field 'nope'",
    ),
    "an over-long system prompt": (_prompt_too_long, "agents.specialist.system_prompt", "20000"),
    "an unregistered tool": (
        lambda d: d["agents"]["specialist"].update(tools=["no_such_tool"]),
        "agents.specialist.tools.0",
        "no tool 'no_such_tool' is registered",
    ),
    "across_teams from a team": (
        lambda d: d["agents"]["specialist"].update(batch={"across_teams": True}),
        "agents.specialist.batch.across_teams",
        "only a deployer's shared workflow",
    ),
    "an unserved model": (
        lambda d: d["agents"]["specialist"].update(model="gemini-9-ultra"),
        "agents.specialist.model",
        "not served here",
    ),
    "a loop to a later stage": (
        lambda d: d["stages"][0].update(loop={"to": "review", "while": "`true`", "max": 2}),
        "stages.0.loop.to",
        "goes back",
    ),
    "an expression that does not parse": (
        lambda d: d["stages"][1]["input"].update(ticket="input.[ticket"),
        "stages.1.input.ticket",
        "JMESPath",
    ),
    "a name in the body that is not the URL's": (lambda d: d.update(name="other"), "name", "not the name in the URL"),
}


@pytest.mark.parametrize("case", list(BAD_DEFINITIONS), ids=list(BAD_DEFINITIONS))
def test_a_bad_definition_is_a_422_naming_the_path_and_nothing_is_stored(client, team, db_session, case):
    team_id, key = team
    change, path, reason = BAD_DEFINITIONS[case]
    resp = put(client, key, triage(change))
    error = assert_error(resp, 422, "invalid_definition")
    assert path in error["message"]
    assert {"path", "reason"} == set(error["details"][0])
    found = [d for d in error["details"] if d["path"] == path]
    assert found and reason in found[0]["reason"], error["details"]
    assert stored_versions(db_session, team_id, "triage") == 0
    assert_error(client.get("/api/workflows/triage", headers=auth(key)), 404, "not_found")


def test_every_problem_of_a_definition_is_listed_at_once(client, team):
    _, key = team
    bad = triage(
        lambda d: (
            d["stages"][1].update(agent="ghost"),
            d["agents"]["specialist"].update(model="gemini-9-ultra", tools=["no_such_tool"]),
        )
    )
    error = assert_error(put(client, key, bad), 422, "invalid_definition")
    assert {"stages.1.agent", "agents.specialist.model", "agents.specialist.tools.0"} <= {
        d["path"] for d in error["details"]
    }
    assert "more)" in error["message"]


def test_bodies_that_are_not_definitions_get_clear_4xx_errors(client, team):
    """Bad YAML or JSON is 400, an alias bomb too, another media type 415, a non-object 422, a bad or
    reserved name 422 at `name`."""
    _, key = team
    h = auth(key)

    def yaml_put(text: str, name: str = "triage"):
        return client.put(f"/api/workflows/{name}", headers={**h, "Content-Type": "application/yaml"}, data=text)

    assert "line 1" in assert_error(yaml_put("name: [triage"), 400, "invalid_yaml")["message"]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
    assert "aliases" in assert_error(yaml_put(bomb), 400, "invalid_yaml")["message"]
    assert "not finite" in assert_error(yaml_put("name: triage\nx: .inf\n"), 400, "invalid_yaml")["message"]
    assert "not a string" in assert_error(yaml_put("name: triage\n1: one\n"), 400, "invalid_yaml")["message"]
    text_yaml = client.put(
        "/api/workflows/triage", headers={**h, "Content-Type": "text/yaml"}, data=yaml.safe_dump(triage())
    )
    assert text_yaml.status_code == 201
    assert_error(
        client.put("/api/workflows/triage", headers=h, data="{", content_type="application/json"), 400, "invalid_json"
    )
    plain = client.put("/api/workflows/triage", headers=h, data="name: triage", content_type="text/plain")
    assert_error(plain, 415, "unsupported_media_type")
    not_object = assert_error(put(client, key, [1, 2]), 422, "invalid_definition")
    assert not_object["details"][0]["path"] == ""
    bad_name = assert_error(
        put(client, key, triage(lambda d: d.pop("name")), name="Bad-Name"), 422, "invalid_definition"
    )
    assert bad_name["details"][0]["path"] == "name"
    reserved = assert_error(put(client, key, triage(lambda d: d.pop("name")), name="schema"), 422, "invalid_definition")
    assert "reserved" in reserved["details"][0]["reason"]
    assert_error(client.put("/api/workflows/triage", json=triage()), 401, "unauthorized")


def test_the_definition_schema_is_public_and_docs_has_the_same(client):
    """GET /api/workflows/schema (no key: editors fetch it) is docs/workflow.schema.json; when the
    definition model changes, `taskapp workflows schema > docs/workflow.schema.json` writes it anew."""
    from taskapp.domain.definitions.model import definition_json_schema

    resp = client.get("/api/workflows/schema")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert resp.json == definition_json_schema()
    assert json.loads(SCHEMA_FILE.read_text()) == resp.json, (
        "docs/workflow.schema.json is out of date: run `taskapp workflows schema > docs/workflow.schema.json`"
    )
    assert resp.json["title"] == "taskapp workflow definition" and "stages" in resp.json["properties"]


def test_an_agent_may_use_a_registered_tool_and_the_version_keeps_the_tools_spec(client, team):
    """A tool registered in the process (as WORKFLOWS_PATH's modules do) can be named; the version
    snapshots its spec, so a later change to the tool does not change the stored version."""
    from taskapp.tools import tool

    name = f"lookup_{uuid.uuid4().hex[:8]}"

    @tool(name, args_schema={"type": "object", "properties": {"q": {"type": "string"}}}, timeout_s=3, retries=1)
    def lookup(q: str) -> str:
        """Look a word up."""
        return q

    _, key = team
    created = put(client, key, triage(lambda d: d["agents"]["specialist"].update(tools=[name])))
    assert created.status_code == 201, created.json
    one = client.get("/api/workflows/triage", headers=auth(key)).json
    assert one["tools"] == [
        {
            "name": name,
            "description": "Look a word up.",
            "args_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            "timeout_s": 3.0,
            "retries": 1,
            "on_error": "feed_back",
        }
    ]
    assert "tools" not in one["definition"]  # the document a team can PUT back
    specialist = [n for n in one["graph"]["nodes"] if n["id"] in ("billing", "tech")]
    assert all(n["tools"] == [name] for n in specialist)


def test_what_the_workflows_api_answers_conforms_to_the_document(client, team):
    """Every answer of the workflows operations has a status, media type and body the OpenAPI document gives."""
    document = client.get("/api/openapi.json").json
    schema = schemathesis.openapi.from_dict(document)
    _, key = team
    h = auth(key)

    def check(method: str, path: str, resp, status: int) -> None:
        assert resp.status_code == status, resp.data
        assert str(status) in document["paths"][path][method.lower()]["responses"]
        schema[path][method].validate_response(resp)

    check("PUT", "/api/workflows/{name}", put(client, key, triage()), 201)
    check("PUT", "/api/workflows/{name}", put(client, key, triage()), 200)
    check("PUT", "/api/workflows/{name}", put(client, key, triage(lambda d: d.update(name="x"))), 422)
    check("GET", "/api/workflows", client.get("/api/workflows", headers=h), 200)
    check("GET", "/api/workflows/{name}", client.get("/api/workflows/triage", headers=h), 200)
    check("GET", "/api/workflows/{name}", client.get("/api/workflows/nobody", headers=h), 404)
    check(
        "GET",
        "/api/workflows/{name}/versions/{number}",
        client.get("/api/workflows/triage/versions/1", headers=h),
        200,
    )
    check("GET", "/api/workflows/schema", client.get("/api/workflows/schema"), 200)
    check("DELETE", "/api/workflows/{name}", client.delete("/api/workflows/research", headers=h), 403)
    check("DELETE", "/api/workflows/{name}", client.delete("/api/workflows/triage", headers=h), 204)
    check("DELETE", "/api/workflows/{name}", client.delete("/api/workflows/nobody", headers=h), 404)
    assert document["paths"]["/api/workflows/schema"]["get"]["security"] == []


def test_the_web_starts_when_postgres_is_down_and_says_the_shared_workflows_wait(settings, capfd):
    """Storing the shared versions at start needs PostgreSQL; without it the process still starts
    (the release step stores them) and logs a warning (the app's own log handler: stderr)."""
    app = app_with(
        settings,
        workflows_path=str(EXAMPLES),
        database_url="postgresql+psycopg://postgres@127.0.0.1:9/nothing?connect_timeout=2",
    )
    assert app.test_client().get("/healthz").status_code == 200
    assert "could not store the shared workflows (PostgreSQL unavailable)" in capfd.readouterr().err


def test_gunicorn_refuses_to_start_on_a_bad_shared_file_and_names_the_file_the_path_and_the_reason(stack, tmp_path):
    """The Procfile's `web` line with a WORKFLOWS_PATH whose file is invalid: the process exits at start."""
    bad = copy.deepcopy(TRIAGE)
    bad["stages"][1]["agent"] = "ghost"
    (tmp_path / "triage.yaml").write_text(yaml.safe_dump(bad))
    proc = stack.spawn(
        "web-bad-workflow",
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "web:create_app()"],
        WORKFLOWS_PATH=str(tmp_path),
    )
    try:
        assert proc.wait(60) != 0
    finally:
        stack.stop(proc)
    log = (stack.log_dir / "web-bad-workflow.log").read_text()
    assert f"{tmp_path / 'triage.yaml'}: stages.1.agent: no agent 'ghost'" in log


def test_a_worker_node_refuses_to_start_on_a_bad_shared_file_and_names_the_file_the_path_and_the_reason(
    stack, tmp_path
):
    """The Procfile's `worker` line with an invalid WORKFLOWS_PATH file: the node exits before it
    takes a task (a worker deciding runs from definitions it cannot read would fail them all)."""
    bad = copy.deepcopy(TRIAGE)
    bad["stages"][1]["agent"] = "ghost"
    (tmp_path / "triage.yaml").write_text(yaml.safe_dump(bad))
    proc = stack.spawn(
        "worker-bad-workflow",
        [sys.executable, "-m", "celery", "-A", "taskapp.celery_app", "worker", "-c", "1", "--without-mingle"],
        WORKFLOWS_PATH=str(tmp_path),
        BATCH_FLUSHER_EMBEDDED="false",
    )
    try:
        assert proc.wait(60) != 0
    finally:
        stack.stop(proc)
    log = (stack.log_dir / "worker-bad-workflow.log").read_text()
    assert f"{tmp_path / 'triage.yaml'}: stages.1.agent: no agent 'ghost'" in log
