"""The UI's own JSON and pages (Flask test client, real PostgreSQL and Redis): the runs list's filters
(in the URL, for the page and its JSON alike; a bad value is a clear 400, never a 500) and pages; a
run page's timeline from its stored steps, events, batches and calls; styled 404 pages while the
API keeps its JSON errors; the form's refusals in words beside their fields."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.helpers import auth, form_token, make_team, ui_login


@pytest.fixture()
def app(settings):
    """The app with a sign-in limit of its own: these tests sign in often, and must not spend the
    per-address budget (20 a minute) that other tests' sign-ins from 127.0.0.1 count against."""
    from web import create_app

    flask_app = create_app(settings.model_copy(update={"sign_in_rate_limit": "1000/minute"}))
    flask_app.config.update(TESTING=True)
    return flask_app


@pytest.fixture()
def signed_in(client, team):
    _, key = team
    assert ui_login(client, key).status_code == 302
    return client


def _run(session, team_id, workflow="research", status="succeeded", created=None, **fields):
    from taskapp.store import workflows
    from taskapp.store.models import Run

    version = workflows.resolve(session, team_id, workflow)
    created = created or datetime.now(UTC)
    run = Run(
        id=uuid.uuid4(),
        team_id=team_id,
        workflow=workflow,
        workflow_version_id=version.id,
        input=fields.pop("input", {"question": f"Question {uuid.uuid4().hex[:6]}"}),
        options={},
        status=status,
        created_at=created,
        started_at=created,
        finished_at=created + timedelta(seconds=4) if status in ("succeeded", "failed", "cancelled") else None,
        **fields,
    )
    session.add(run)
    session.flush()
    return run


def _make_runs(settings, team_id, specs):
    from taskapp.store.db import session_factory

    with session_factory(settings).begin() as session:
        return [str(_run(session, team_id, *spec).id) for spec in specs]


def test_the_runs_list_filters_by_status_and_workflow_in_the_url(signed_in, team, settings):
    team_id, key = team
    ids = _make_runs(
        settings,
        team_id,
        [("research", "failed"), ("research", "succeeded"), ("summarize", "failed"), ("research", "failed")],
    )
    failed_research = {ids[0], ids[3]}
    data = signed_in.get("/runs.json?status=failed&workflow=research").json
    assert {r["id"] for r in data["runs"]} == failed_research
    row = data["runs"][0]
    assert row["stages"]["total"] == 4 and row["outcome"]["tone"] == "bad"
    assert row["input_preview"].startswith("Question ") and row["duration_ms"] == 4000
    page = signed_in.get("/?status=failed&workflow=research")
    assert page.status_code == 200
    html = page.data.decode()
    assert all(i in html for i in failed_research) and ids[1] not in html and ids[2] not in html
    assert '<option value="failed" selected>' in html and '<option value="research" selected>' in html
    assert 'data-poll="/runs.json?status=failed&amp;workflow=research"' in html
    assert {r["id"] for r in signed_in.get("/runs.json?workflow=summarize").json["runs"]} == {ids[2]}
    assert len(signed_in.get("/runs.json").json["runs"]) == 4
    # The API has the same filter.
    api = signed_in.get("/api/runs?workflow=research&status=failed", headers=auth(key)).json
    assert {r["id"] for r in api["runs"]} == failed_research


@pytest.mark.parametrize(
    ("query", "code", "says"),
    [
        ("status=bogus", "invalid_status", "status must be one of queued, running"),
        ("workflow=Not-A-Name", "invalid_workflow", "workflow must be a workflow's name"),
        ("workflow=" + "a" * 80, "invalid_workflow", "workflow must be"),
        ("cursor=garbage", "invalid_cursor", "page link is not valid"),
    ],
)
def test_a_bad_filter_is_a_clear_400_for_the_json_and_a_styled_page(signed_in, query, code, says):
    data = signed_in.get(f"/runs.json?{query}")
    assert data.status_code == 400 and data.json["error"]["code"] == code and says in data.json["error"]["message"]
    page = signed_in.get(f"/?{query}")
    assert page.status_code == 400 and page.mimetype == "text/html"
    html = page.data.decode()
    assert says.replace("'", "&#39;") in html and "Back to the runs" in html and 'class="brand"' in html


def test_the_api_refuses_a_bad_workflow_filter_with_a_400(client, team):
    _, key = team
    resp = client.get("/api/runs?workflow=DROP%20TABLE", headers=auth(key))
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_workflow"


def test_the_runs_list_pages_keep_their_filters(signed_in, team, settings):
    team_id, _ = team
    now = datetime.now(UTC)
    from taskapp.store.db import session_factory

    with session_factory(settings).begin() as session:
        for i in range(27):
            _run(session, team_id, "summarize", "succeeded", now - timedelta(seconds=i), input={"text": f"t{i}"})
        _run(session, team_id, "research", "succeeded", now)
    first = signed_in.get("/runs.json?workflow=summarize").json
    assert len(first["runs"]) == 25 and first["next_cursor"]
    html = signed_in.get("/?workflow=summarize").data.decode()
    assert f'href="/?workflow=summarize&amp;cursor={first["next_cursor"]}"' in html
    second = signed_in.get(f"/runs.json?workflow=summarize&cursor={first['next_cursor']}").json
    assert [r["input_preview"] for r in second["runs"]] == ["t25", "t26"] and second["next_cursor"] is None
    assert "Newest runs" in signed_in.get(f"/?workflow=summarize&cursor={first['next_cursor']}").data.decode()


def _timeline_run(settings, team_id):
    """A research run that ended unapproved; two of its steps shared a batch with another run's step,
    and that batch made a repair call. Its events are stored with known times."""
    from taskapp.store.db import session_factory
    from taskapp.store.models import Batch, Event, LlmCall, Step

    t0 = datetime.now(UTC) - timedelta(minutes=1)
    ms = lambda n: t0 + timedelta(milliseconds=n)  # noqa: E731
    output = {"title": "Tides", "answer": "The moon.", "approved": False, "revisions": 2, "review": "thin"}
    with session_factory(settings).begin() as session:
        run = _run(session, team_id, "research", "succeeded", t0, output=output)
        # Another run's step shared the batch. Ended, like the batch: a run or batch these tests
        # leave open would count as work on its way (the idle flush) for the tests after them.
        other = _run(session, team_id, "research", "succeeded", t0)
        batch_id = uuid.uuid4()
        session.add(
            Batch(
                id=batch_id,
                agent="researcher",
                model="gemini-2.5-flash-lite",
                size=3,
                reason="window",
                flushed_at=ms(3000),
                finished_at=ms(3500),
            )
        )
        steps = []
        for seq, (stage, run_id) in enumerate([("planner", run.id), ("researcher", run.id), ("researcher", run.id)]):
            steps.append(
                Step(
                    id=uuid.uuid4(),
                    run_id=run_id,
                    seq=seq,
                    agent=stage,
                    model="gemini-2.5-flash-lite",
                    stage=stage,
                    status="succeeded",
                    input={"q": seq},
                    output={"a": seq},
                    queued_at=ms(0 if seq == 0 else 1000),
                    started_at=ms(4000),
                    finished_at=ms(4200),
                    batch_id=None if seq == 0 else batch_id,
                    cost_usd=Decimal("0.0001"),
                    tokens_in=10,
                    tokens_out=5,
                    item=seq - 1 if seq else 0,
                )
            )
        steps.append(
            Step(
                id=uuid.uuid4(),
                run_id=other.id,
                seq=0,
                agent="researcher",
                model="gemini-2.5-flash-lite",
                stage="researcher",
                status="succeeded",
                input={"secret": "other run"},
                queued_at=ms(1000),
                batch_id=batch_id,
            )
        )
        session.add_all(steps)
        session.flush()
        session.add_all(
            [
                LlmCall(
                    batch_id=batch_id,
                    agent="researcher",
                    model="m",
                    step_count=3,
                    status="partial",
                    created_at=ms(4100),
                ),
                LlmCall(
                    batch_id=batch_id, agent="researcher", model="m", step_count=1, status="ok", created_at=ms(4150)
                ),
            ]
        )
        mine = steps[1]
        for type_, when in [
            ("step.queued", 1000),
            ("step.batched", 3000),
            ("quota.wait", 3200),
            ("step.started", 4000),
            ("step.succeeded", 4200),
        ]:
            data = {"run_id": str(run.id), "step_id": str(mine.id), "seq": 1, "ts": ms(when).isoformat()}
            session.add(Event(run_id=run.id, type=type_, data=data))
        return str(run.id), str(mine.id)


def test_a_run_pages_timeline_has_each_steps_phases_and_the_batch_it_shared(signed_in, team, settings):
    team_id, _ = team
    run_id, step_id = _timeline_run(settings, team_id)
    view = signed_in.get(f"/runs/{run_id}/view.json").json
    assert view["outcome"]["label"] == "not approved after 2 revisions" and view["outcome"]["tone"] == "warn"
    step = next(s for s in view["run"]["steps"] if s["id"] == step_id)
    assert [(p["kind"], p["start_ms"], p["end_ms"]) for p in step["phases"]] == [
        ("buffer", 1000, 3000),
        ("dispatch", 3000, 3200),
        ("quota", 3200, 4000),
        ("call", 4000, 4200),
    ]
    batch = step["batch"]
    assert (batch["size"], batch["steps_of_this_run"], batch["steps_of_other_runs"], batch["other_runs"]) == (
        3,
        2,
        1,
        1,
    )
    assert batch["repairs"] == 1 and [c["steps"] for c in batch["calls"]] == [3, 1]
    assert "other run" not in str(view)  # another run's steps are counted, never shown
    assert view["stages"]["done"] == 4 and view["stages"]["states"]["writer"] == "done" or view["stages"]["total"] == 4
    assert {n["id"] for n in view["graph"]["nodes"]} >= {"planner", "researcher", "writer", "reviewer"}
    page = signed_in.get(f"/runs/{run_id}").data.decode()
    assert "not approved after 2 revisions" in page and "tone-warn" in page
    assert "succeeded</span>" not in page.split("</h1>")[0]  # the heading never says a plain "succeeded"


def test_another_teams_run_page_and_json_are_404(signed_in, settings):
    other_team, _ = make_team(settings)
    run_id, _ = _timeline_run(settings, other_team)
    assert signed_in.get(f"/runs/{run_id}/view.json").status_code == 404
    page = signed_in.get(f"/runs/{run_id}")
    assert page.status_code == 404 and "Page not found" in page.data.decode()


def test_not_found_pages_are_styled_with_a_way_back_and_the_api_keeps_json(signed_in, app):
    page = signed_in.get("/no/such/page")
    html = page.data.decode()
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "Page not found" in html and "Back to the runs" in html and "app.css" in html
    api = signed_in.get(f"/api/runs/{uuid.uuid4()}")
    assert api.status_code == 404 and api.json["error"]["code"] == "not_found"
    anonymous = app.test_client().get("/no/such/page").data.decode()
    assert "Page not found" in anonymous and "Sign in" in anonymous and "Back to the runs" not in anonymous


def test_an_unexpected_error_is_a_styled_500_page_that_shows_nothing_of_it(app, team):
    from web.auth import login_required

    @app.get("/_test/boom")
    @login_required
    def boom():
        raise RuntimeError("secret boom detail")

    client = app.test_client()
    assert ui_login(client, team[1]).status_code == 302
    crashed = client.get("/_test/boom")
    html = crashed.data.decode()
    assert crashed.status_code == 500 and "Something went wrong" in html and "Back to the runs" in html
    assert "secret boom detail" not in html
    api = client.get("/_test/boom", headers={"Accept": "application/json"})
    assert api.status_code == 500 and api.json["error"]["code"] == "internal_error"


def _post_form(client, **fields):
    token = form_token(client.get("/runs/new?workflow=research").data)
    return client.post("/runs/new", data={"workflow": "research", "csrf_token": token, **fields})


def test_the_form_says_what_is_wrong_beside_the_field_in_words(signed_in):
    blank = _post_form(signed_in, question="    ", max_revisions="2")
    html = blank.data.decode()
    assert blank.status_code == 422
    assert '<p class="field-error" id="f-question-error">Question cannot be blank: please fill it in.</p>' in html
    assert 'aria-invalid="true"' in html and "is too short" not in html and "minLength" not in html
    long = _post_form(signed_in, question="x" * 4001, max_revisions="2").data.decode()
    assert "Question can be at most 4,000 characters; this has 4,001, so shorten it by 1." in long
    too_many = _post_form(signed_in, question="How do tides work?", max_revisions="11").data.decode()
    assert "Max revisions must be from 0 to 10." in too_many and "is greater than" not in too_many
    assert "How do tides work?" in too_many  # what was typed stays


def test_the_form_shows_its_limits_and_explains_the_priority(signed_in, settings):
    html = signed_in.get("/runs/new?workflow=research").data.decode()
    assert 'maxlength="4000"' in html and "3 to 4,000 characters." in html
    assert 'id="f-question-count"' in html and "0 / 4,000" in html
    wait_s = settings.batch_max_wait_ms / 1000
    assert f"each step waits up to {wait_s:g} s" in html and "Start now" in html
