"""The UI in real headless Chromium on real workers and the simulator: a run's timeline grows live with
its phases and the batch each step shared, a step expands from the keyboard, an unapproved run says
so, the runs list updates itself and filters in its URL, the form says what is wrong beside each
field, every page fits a 390 px phone, and no page logs a console error (a CSP violation is one).

Needs Chromium (Debian's `chromium` package; `.ci/run` installs it). Screenshots go to
test-artifacts/ (look at them: they are how the layout is checked by eye).
"""

from __future__ import annotations

import shutil
import time
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import expect

from tests.helpers import ARTIFACTS, auth, wait_for_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def web_url(stack, workers):
    url, proc = stack.start_web()
    yield url
    stack.stop(proc)


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _page(browser, viewport=None):
    pg = browser.new_page(viewport=viewport or {"width": 1280, "height": 900})
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    return pg


@pytest.fixture()
def page(browser):
    return _page(browser)


@pytest.fixture()
def sim(stack):
    """The simulator's knobs, put back after the test."""

    def configure(**values):
        httpx.post(f"{stack.sim_url}/_sim/config", json=values).raise_for_status()

    yield configure
    configure(latency_ms=0, output_overrides={})


def sign_in(page, web_url: str, settings, team_id) -> None:
    """Signed in by a one-time link, as `taskapp teams login-link` prints it."""
    from taskapp.store.db import session_factory
    from taskapp.store.models import Team
    from taskapp.store.teams import login_url, make_login_link

    with session_factory(settings).begin() as session:
        link = login_url(web_url, make_login_link(session, session.get(Team, team_id), timedelta(minutes=5)))
    page.goto("about:blank")  # a fresh load of /login (from /login itself only the fragment would change)
    page.goto(link)
    assert "#" not in page.url  # the token left the address bar
    page.click("#link-form button[type=submit]")
    page.wait_for_selector("header .team")


def submit(web_url: str, key: str, workflow: str, run_input: dict, **options) -> str:
    resp = httpx.post(
        f"{web_url}/api/runs",
        headers=auth(key),
        json={"workflow": workflow, "input": run_input, "options": options},
        timeout=10,
    )
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def assert_axis_over_tracks(page) -> None:
    """The time axis spans exactly the steps' tracks (its ticks read true)."""
    axis, track = page.locator("#axis").bounding_box(), page.locator("#steps .track").first.bounding_box()
    assert axis and track and abs(axis["x"] - track["x"]) <= 2 and abs(axis["width"] - track["width"]) <= 2, (
        axis,
        track,
    )


def no_overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_a_runs_timeline_grows_live_with_its_phases_and_the_batch_it_shared(page, web_url, team, settings, sim):
    team_id, key = team
    sign_in(page, web_url, settings, team_id)
    sim(latency_ms=300, output_overrides={"approved": True})  # slow enough to watch; approved at once
    # Two runs at once: their steps share Gemini calls.
    first = submit(web_url, key, "research", {"question": "How do tides work?", "max_revisions": 1})
    submit(web_url, key, "research", {"question": "Why is the sky blue?", "max_revisions": 1})
    page.goto(f"{web_url}/runs/{first}")
    page.wait_for_selector("#steps details.step", timeout=15_000)
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 60
    live_shot = False
    while page.locator("#run-status").get_attribute("data-status") != "succeeded" and time.monotonic() < deadline:
        seen.add((page.locator("#steps details.step").count(), page.locator("#steps .phase").count()))
        if not live_shot and page.locator("#steps details.step").count() >= 3:
            page.screenshot(path=str(ARTIFACTS / "ui-run-live.png"), full_page=True)  # mid-run, phases open
            live_shot = True
        time.sleep(0.1)
    assert page.locator("#run-status").get_attribute("data-status") == "succeeded"
    expect(page.locator("#steps .phase.open")).to_have_count(0)
    steps = page.locator("#steps details.step")
    assert len({steps for steps, _ in seen}) >= 3, f"the timeline did not fill live: {sorted(seen)}"
    assert len({phases for _, phases in seen}) >= 4, f"the phases did not grow live: {sorted(seen)}"
    # Each agent step waited in its buffer, then made its call; each says which batch it shared.
    assert page.locator("#steps details.step .track .phase.buffer").count() >= steps.count()
    assert page.locator("#steps details.step .track .phase.call").count() >= steps.count()
    shared = page.locator("#steps .batch-info", has_text="other run")
    assert shared.count() >= 1, page.locator("#steps .batch-info").all_inner_texts()
    assert "in one call" in shared.first.text_content()
    # A step opens from the keyboard to its input, output and calls.
    summary = steps.first.locator("summary")
    summary.focus()
    page.keyboard.press("Enter")
    assert steps.first.evaluate("d => d.open")
    body = steps.first.locator(".step-body")
    assert body.is_visible() and "How do tides work?" in body.inner_text() and "batch call" in body.inner_text()
    # The outcome first: the answer, the facts; the graph shows every stage done.
    assert page.locator("#answer h3").is_visible() and page.locator("#fact-cost").inner_text().startswith("$")
    assert page.locator("#run-status").inner_text() == "succeeded"
    assert page.locator("svg.graph-picture .node.state-done").count() == 4
    assert_axis_over_tracks(page)
    page.screenshot(path=str(ARTIFACTS / "ui-run.png"), full_page=True)
    assert page.console_errors == []


def test_a_run_the_reviewer_never_approved_is_shown_as_not_approved(page, web_url, team, settings, sim):
    team_id, key = team
    sim(output_overrides={"approved": False})
    run_id = submit(
        web_url, key, "research", {"question": "What is a quasar?", "max_revisions": 1}, priority="interactive"
    )
    wait_for_run(settings, run_id)
    sign_in(page, web_url, settings, team_id)
    page.goto(f"{web_url}/runs/{run_id}")
    status = page.locator("#run-status")
    assert status.inner_text() == "not approved after 1 revision"
    assert "tone-warn" in status.get_attribute("class")
    assert page.locator("#outcome-reason").is_visible()
    assert "did not approve" in page.locator("#outcome-reason").inner_text()
    page.goto(f"{web_url}/?workflow=research")
    assert page.locator(f'tr[data-run="{run_id}"] .status').inner_text() == "not approved after 1 revision"
    page.goto(f"{web_url}/runs/{run_id}")
    page.screenshot(path=str(ARTIFACTS / "ui-run-unapproved.png"), full_page=True)
    assert page.console_errors == []


def test_a_tool_step_shows_its_tool_call_and_a_routed_run_skips_the_other_desks(page, web_url, team, settings, sim):
    team_id, key = team
    sim(output_overrides={"category": "refund"})
    run_id = submit(
        web_url,
        key,
        "support",
        {"message": "It arrived broken; refund me.", "order_id": "A-1001"},
        priority="interactive",
    )
    assert wait_for_run(settings, run_id).status == "succeeded"
    sign_in(page, web_url, settings, team_id)
    page.goto(f"{web_url}/runs/{run_id}")
    tool = page.locator("#steps details.step.kind-tool").first
    assert tool.locator(".track .phase.tool").count() == 1
    tool.locator("summary").click()
    assert "a tool call, run on the tools queue" in tool.inner_text() and "A-1001" in tool.inner_text()
    page.wait_for_selector("figure.graph.drawn")
    skipped = page.locator("svg.graph-picture .node.state-skipped")
    assert skipped.count() >= 1 and page.locator('svg.graph-picture .node.state-done[data-node="refunds"]').count() == 1
    assert "3 of 3 stages" in page.locator("#stage-words").inner_text()
    page.screenshot(path=str(ARTIFACTS / "ui-run-tools.png"), full_page=True)
    assert page.console_errors == []


def test_the_runs_list_updates_itself_and_its_filters_live_in_the_url(page, web_url, team, settings):
    team_id, key = team
    sign_in(page, web_url, settings, team_id)
    page.goto(f"{web_url}/")
    page.evaluate("window.notReloaded = true")
    done = submit(web_url, key, "summarize", {"text": "Celery runs tasks; Redis carries their messages."})
    row = page.locator(f'tr[data-run="{done}"]')
    row.wait_for(timeout=10_000)  # appeared without a reload
    expect(row.locator(".status")).to_have_text("succeeded", timeout=20_000)
    assert "Celery runs tasks" in row.locator(".preview").inner_text()
    assert row.locator("[data-label=Cost]").inner_text().startswith("$")
    assert row.locator("[data-label=Duration]").inner_text() != ""
    # A run stopped by its step limit: shown failed where it stopped, not as a full bar.
    failed = submit(web_url, key, "research", {"question": "How do tides work?"}, limits={"max_steps": 1})
    expect(page.locator(f'tr[data-run="{failed}"] .status')).to_have_text("failed", timeout=20_000)
    bar = page.locator(f'tr[data-run="{failed}"] .stage-bar')
    assert bar.locator(".seg.failed").count() == 1 and bar.locator(".seg.done").count() < bar.locator(".seg").count()
    assert "failed" in bar.get_attribute("aria-label")
    assert page.evaluate("window.notReloaded") is True
    # Filters are in the URL, and the URL alone sets them.
    page.select_option("#filter-status", "failed")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/?status=failed*")
    assert page.locator("table.runs tbody tr").count() >= 1
    assert page.locator("table.runs tbody tr:not(.failed)").count() == 0
    page.goto(f"{web_url}/?status=failed&workflow=research")
    assert page.locator("#filter-status").input_value() == "failed"
    assert page.locator("#filter-workflow").input_value() == "research"
    assert page.locator(f'tr[data-run="{failed}"]').count() == 1 and page.locator(f'tr[data-run="{done}"]').count() == 0
    page.goto(f"{web_url}/")
    page.screenshot(path=str(ARTIFACTS / "ui-runs.png"), full_page=True)
    page.goto(f"{web_url}/?status=bogus")
    assert "status must be one of" in page.locator("main").inner_text()
    page.console_errors[:] = [e for e in page.console_errors if "400" not in e]  # the page's own status
    assert page.console_errors == []


def test_the_form_shows_its_limits_and_says_what_is_wrong_beside_the_field(page, web_url, team, settings):
    team_id, _ = team
    sign_in(page, web_url, settings, team_id)
    page.goto(f"{web_url}/runs/new?workflow=research")
    assert page.locator("#f-question-count").inner_text() == "0 / 4,000"
    page.locator("#f-question").press_sequentially("Tides?")
    assert page.locator("#f-question-count").inner_text() == "6 / 4,000"
    assert "3 to 4,000 characters" in page.locator("#f-question-hint").inner_text()
    assert "waits up to" in page.locator("fieldset.priority").inner_text()
    page.fill("#f-question", "   ")
    page.click("#new-run button[type=submit]")
    error = page.locator("#f-question-error")
    assert error.inner_text().endswith("Question cannot be blank: please fill it in.")
    assert page.evaluate("document.activeElement.id") == "f-question"
    assert page.locator("#f-question").get_attribute("aria-describedby").endswith("f-question-error")
    page.screenshot(path=str(ARTIFACTS / "ui-form-errors.png"), full_page=True)
    page.evaluate("document.getElementById('f-question').removeAttribute('maxlength')")
    page.fill("#f-question", "x" * 4001)
    page.click("#new-run button[type=submit]")
    assert "at most 4,000 characters; this has 4,001" in page.locator("#f-question-error").inner_text()
    page.console_errors[:] = [e for e in page.console_errors if "422" not in e]  # the refusal's own status
    assert page.console_errors == []


def test_the_dashboards_series_are_drawn_with_data_over_the_chosen_range(page, web_url, team, settings):
    team_id, key = team
    runs = [submit(web_url, key, "summarize", {"text": f"Text number {i} for the charts."}) for i in range(3)]
    for run_id in runs:
        wait_for_run(settings, run_id)
    sign_in(page, web_url, settings, team_id)
    page.goto(f"{web_url}/dashboard?range=15m")
    page.wait_for_selector("#chart-throughput .uplot canvas")
    assert page.locator("#charts .uplot").count() == 7
    drawn = page.evaluate(
        "Object.keys(window.taskappCharts).map(k => [k, window.taskappCharts[k].series.length, "
        "window.taskappCharts[k].data.slice(1).flat().filter(v => v > 0).length])"
    )
    by_chart = {name: (series, points) for name, series, points in drawn}
    assert by_chart["throughput"][1] >= 2, by_chart  # steps and calls in this range
    assert by_chart["cost"][1] >= 1 and by_chart["call-latency"][1] >= 1, by_chart
    assert by_chart["requests"][0] >= 3, by_chart  # time, a model, and its limit drawn against it
    assert page.evaluate("window.taskappCharts.throughput.scales.x.time") is True  # a time axis
    assert "calls saved" in page.locator("#savings").inner_text()
    assert "in batch buffers" in page.locator("#waits").inner_text()
    page.screenshot(path=str(ARTIFACTS / "ui-dashboard.png"), full_page=True)
    assert page.console_errors == []


def test_every_page_fits_a_390px_phone_without_console_errors(browser, web_url, team, settings):
    team_id, key = team
    run_id = submit(web_url, key, "research", {"question": "How do tides work?", "max_revisions": 1})
    wait_for_run(settings, run_id)
    page = _page(browser, PHONE)
    page.goto(f"{web_url}/login")
    assert no_overflow(page) <= 390
    page.screenshot(path=str(ARTIFACTS / "phone-login.png"), full_page=True)
    sign_in(page, web_url, settings, team_id)
    pages = {
        "runs": "/",
        "runs-filtered": "/?status=succeeded&workflow=research",
        "run": f"/runs/{run_id}",
        "new-run": "/runs/new?workflow=research",
        "workflows": "/workflows",
        "workflow-version": "/workflows/research/versions/1",
        "dashboard": "/dashboard",
        "not-found": "/no/such/page",
    }
    for name, path in pages.items():
        page.goto(web_url + path)
        if name in ("run", "workflows", "workflow-version"):
            page.wait_for_selector("figure.graph.drawn")
        if name == "run":
            assert_axis_over_tracks(page)
        if name == "dashboard":
            page.wait_for_selector("#chart-cost .uplot canvas")
        width = no_overflow(page)
        page.screenshot(path=str(ARTIFACTS / f"phone-{name}.png"), full_page=True)
        assert width <= 390, f"{path} is {width} px wide at 390"
    errors = [e for e in page.console_errors if "404" not in e]  # the not-found page's own status
    assert errors == []
