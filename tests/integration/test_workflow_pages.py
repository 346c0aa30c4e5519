"""The workflows pages and the new-run form (Flask test client, real PostgreSQL and Redis): the form is
built from the chosen version's input schema, and what it posts arrives typed; each workflow's
graph goes to the page for static/graph.js (vendored dagre) to draw, under the strict CSP."""

from __future__ import annotations

import json
import re
import uuid
from html.parser import HTMLParser

from tests.helpers import ROOT, auth, form_token, make_team, ui_login
from tests.integration.test_workflows_api import put, triage

FORM_INPUT = {
    "type": "object",
    "properties": {
        "ticket": {
            "type": "string",
            "title": "Ticket",
            "minLength": 1,
            "maxLength": 4000,
            "description": "What happened",
        },
        "subject": {"type": "string", "maxLength": 80, "default": "help"},
        "tries": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2},
        "weight": {"type": "number", "minimum": 0, "maximum": 1},
        "urgent": {"type": "boolean", "default": True},
        "notify": {"type": "boolean"},
        "team": {"type": "string", "enum": ["billing", "tech"], "default": "tech"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["ticket"],
    "additionalProperties": False,
}


class _Form(HTMLParser):
    """The new-run form's controls: name -> (tag, attributes), and each select's options."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: dict[str, tuple[str, dict[str, str | None]]] = {}
        self.options: dict[str, list[tuple[str, bool]]] = {}
        self.inline_scripts = 0
        self.styles = 0
        self._select: str | None = None
        self._script_src: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "style" in found:
            self.styles += 1
        if tag == "script":
            self._script_src = found.get("src") or (found.get("type") or "")
            if not found.get("src") and found.get("type") != "application/json":
                self.inline_scripts += 1
        if tag in ("input", "textarea", "select") and found.get("name"):
            self.controls[str(found["name"])] = (tag, found)
            if tag == "select":
                self._select = str(found["name"])
                self.options[self._select] = []
        if tag == "option" and self._select:
            self.options[self._select].append((str(found.get("value")), "selected" in found))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def _parse(page: bytes) -> _Form:
    form = _Form()
    form.feed(page.decode())
    return form


def test_the_form_is_built_from_the_input_schema_and_posts_typed_values(client, team, db_session):
    """string -> text input or textarea by maxLength, integer/number -> number input with bounds,
    boolean -> checkbox, enum -> select, anything else -> JSON; defaults and descriptions shown."""
    from taskapp.store.models import Run

    _, key = team
    assert put(client, key, triage(lambda d: d.update(input_schema=FORM_INPUT))).status_code == 201
    assert ui_login(client, key).status_code == 302
    page = client.get("/runs/new?workflow=triage")
    assert page.status_code == 200
    form = _parse(page.data)
    c = form.controls
    assert c["ticket"][0] == "textarea" and c["ticket"][1]["maxlength"] == "4000" and "required" in c["ticket"][1]
    assert c["subject"][0] == "input" and c["subject"][1]["type"] == "text" and c["subject"][1]["maxlength"] == "80"
    assert c["subject"][1]["value"] == "help"
    assert c["tries"][1]["type"] == "number" and (c["tries"][1]["min"], c["tries"][1]["max"]) == ("1", "5")
    assert c["tries"][1]["step"] == "1" and c["tries"][1]["value"] == "2"
    assert c["weight"][1]["type"] == "number" and c["weight"][1]["step"] == "any"
    assert c["urgent"][1]["type"] == "checkbox" and "checked" in c["urgent"][1]
    assert c["notify"][1]["type"] == "checkbox" and "checked" not in c["notify"][1]
    assert c["team"][0] == "select" and form.options["team"] == [("billing", False), ("tech", True)]
    assert c["tags"][0] == "textarea"
    assert b"What happened" in page.data and b"Ticket" in page.data
    assert form.inline_scripts == 0 and form.styles == 0

    resp = client.post(
        "/runs/new",
        data={
            "workflow": "triage",
            "ticket": "  Charged twice  ",
            "subject": "refund",
            "tries": "3",
            "weight": "0.5",
            "notify": "true",  # urgent left unticked
            "team": "billing",
            "tags": '["money", "card"]',
            "priority": "batch",
            "csrf_token": form_token(page.data),
        },
    )
    assert resp.status_code == 302, resp.data[:500]
    run_id = resp.headers["Location"].rsplit("/", 1)[-1]
    db_session.rollback()
    run = db_session.get(Run, uuid.UUID(run_id))
    assert run.input == {
        "ticket": "Charged twice",
        "subject": "refund",
        "tries": 3,
        "weight": 0.5,
        "urgent": False,
        "notify": True,
        "team": "billing",
        "tags": ["money", "card"],
    }


def test_a_refused_form_names_its_fields_and_keeps_what_was_typed(client, team):
    _, key = team
    put(client, key, triage(lambda d: d.update(input_schema=FORM_INPUT)))
    ui_login(client, key)
    page = client.get("/runs/new?workflow=triage")
    resp = client.post(
        "/runs/new",
        data={"workflow": "triage", "ticket": "x", "tries": "9", "csrf_token": form_token(page.data)},
    )
    assert resp.status_code == 422
    assert b"tries" in resp.data and b"9" in resp.data
    assert _parse(resp.data).controls["tries"][1]["value"] == "9"


def test_the_form_runs_the_version_it_was_opened_for(client, team):
    """From the workflows page's version links: ?version=N builds that version's form and pins the run."""
    _, key = team
    put(client, key, triage())
    put(client, key, triage(lambda d: d["input_schema"]["properties"].update(extra={"type": "string"})))
    ui_login(client, key)
    latest = _parse(client.get("/runs/new?workflow=triage").data)
    assert "extra" in latest.controls and "version" not in latest.controls
    page = client.get("/runs/new?workflow=triage&version=1")
    form = _parse(page.data)
    assert "extra" not in form.controls and form.controls["version"][1]["value"] == "1"
    resp = client.post(
        "/runs/new",
        data={"workflow": "triage", "version": "1", "ticket": "Hello", "csrf_token": form_token(page.data)},
    )
    assert resp.status_code == 302
    run_id = resp.headers["Location"].rsplit("/", 1)[-1]
    assert client.get(f"/api/runs/{run_id}", headers=auth(key)).json["workflow_version"] == 1
    assert client.get("/runs/new?workflow=triage&version=7").status_code == 404
    assert client.get("/runs/new?workflow=triage&version=x").status_code == 404
    assert client.get("/runs/new?workflow=nobody").status_code == 404


def test_the_workflows_page_lists_versions_and_hands_each_graph_to_the_drawing_script(client, settings, team):
    """Each workflow the team can run, its versions newest first, and its graph as data for graph.js;
    another team's workflow is not there, and its version page is a 404."""
    _, key = team
    put(client, key, triage())
    put(client, key, triage(lambda d: d.update(description="v2")))
    _, other_key = make_team(settings)
    put(client, other_key, triage(lambda d: d.update(name="secret_flow")), name="secret_flow")
    ui_login(client, key)
    page = client.get("/workflows")
    assert page.status_code == 200
    html = page.data.decode()
    assert 'id="wf-triage"' in html and 'id="wf-research"' in html and "secret_flow" not in html
    card = html[html.index('id="wf-triage"') : html.index("</section>", html.index('id="wf-triage"'))]
    assert re.findall(r"/workflows/triage/versions/(\d+)", card) == ["2", "1"]
    graphs = [json.loads(g.replace("&#39;", "'")) for g in re.findall(r"data-graph='([^']*)'", html)]
    ours = next(g for g in graphs if any(n["id"] == "classify" for n in g["nodes"]))
    assert {(e["source"], e["target"], e["kind"]) for e in ours["edges"]} >= {
        ("classify", "billing", "route"),
        ("classify", "tech", "route"),
        ("review", "review", "loop"),
    }
    assert "classify → billing" in card and "route" in card  # the graph in words, without script
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == ["/static/vendor/dagre/dagre.min.js", "/static/graph.js"]
    assert _parse(page.data).inline_scripts == 0 and _parse(page.data).styles == 0
    version = client.get("/workflows/triage/versions/1")
    assert version.status_code == 200 and b"data-graph=" in version.data and b"Classify a ticket" in version.data
    assert client.get("/workflows/secret_flow/versions/1").status_code == 404
    assert client.get("/workflows/triage/versions/3").status_code == 404


def test_the_vendored_layout_library_is_served_with_its_licence_and_the_csp_allows_it(client):
    """dagre is served from this server (no CDN) as JavaScript, with its MIT licence beside it; the
    pages keep the strict policy (no inline script or style) that graph.js is written for."""
    lib = client.get("/static/vendor/dagre/dagre.min.js")
    assert lib.status_code == 200 and lib.mimetype in ("text/javascript", "application/javascript")
    assert lib.data.startswith(b'"use strict";var dagre=')
    licence = (ROOT / "web" / "static" / "vendor" / "dagre" / "LICENSE").read_text()
    assert "MIT" in licence or "Permission is hereby granted" in licence
    assert "3.1.3" in (ROOT / "web" / "static" / "vendor" / "dagre" / "README.md").read_text()
    csp = client.get("/login").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    script = (ROOT / "web" / "static" / "graph.js").read_text()
    assert ".style" not in script and "innerHTML" not in script and 'setAttribute("style"' not in script
