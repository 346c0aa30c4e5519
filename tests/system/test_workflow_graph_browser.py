"""The workflows page in real headless Chromium: each workflow's graph is drawn as an SVG picture
(stages, fan-out, loops, routes) by the vendored dagre and static/graph.js, under the strict
content security policy (a violation is a console error), and the new-run form follows the
input schema. Needs Chromium (Debian's `chromium`); screenshots go to test-artifacts/."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from tests.helpers import ARTIFACTS, auth
from tests.integration.test_workflows_api import TRIAGE
from tests.system.test_browser import CHROMIUM

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def web_url(stack):
    url, proc = stack.start_web()
    yield url
    stack.stop(proc)


def _sign_in(page, web_url: str, settings, team_id) -> None:
    from taskapp.store.db import session_factory
    from taskapp.store.models import Team
    from taskapp.store.teams import login_url, make_login_link

    with session_factory(settings).begin() as session:
        link = login_url(web_url, make_login_link(session, session.get(Team, team_id), timedelta(minutes=5)))
    page.goto(link)
    page.click("#link-form button[type=submit]")
    page.wait_for_selector("header .team")


def test_each_workflow_graph_is_drawn_under_the_csp(page, web_url, team, settings):
    team_id, key = team
    pushed = httpx.put(f"{web_url}/api/workflows/triage", headers=auth(key), json=TRIAGE, timeout=10)
    assert pushed.status_code == 201, pushed.text
    _sign_in(page, web_url, settings, team_id)
    page.goto(f"{web_url}/workflows")
    page.wait_for_selector("#wf-triage figure.graph.drawn svg.graph-picture")
    triage = page.locator("#wf-triage svg.graph-picture")
    assert triage.locator(".node.stage").count() == 4
    assert triage.locator(".node.input").count() == 1 and triage.locator(".node.output").count() == 1
    assert triage.locator(".edge.route").count() == 2 and triage.locator(".edge.loop").count() == 1
    assert "= billing" in triage.inner_html() and "loop: at most 2" in triage.inner_html()
    research = page.locator("#wf-research svg.graph-picture")
    assert research.locator(".node.fan-out").count() == 1 and research.locator(".edge.fan_out").count() == 1
    assert research.locator(".edge.loop").count() == 1
    box = triage.bounding_box()
    assert box and box["width"] > 150 and box["height"] > 250  # laid out, not collapsed to a point
    # The stages are laid out in layers: the specialists side by side below the classifier.
    tops = {
        name: triage.locator(".node.stage", has_text=name).first.bounding_box()["y"]
        for name in ("classify", "billing", "tech", "review")
    }
    assert tops["classify"] < tops["billing"] == tops["tech"] < tops["review"]
    page.screenshot(path=str(ARTIFACTS / "ui-workflows.png"), full_page=True)
    page.goto(f"{web_url}/workflows/research/versions/1")
    page.wait_for_selector("figure.graph.drawn svg.graph-picture")
    page.goto(f"{web_url}/runs/new?workflow=research")
    assert page.locator("#f-question").evaluate("e => e.tagName") == "TEXTAREA"
    assert page.locator("#f-max_revisions").get_attribute("type") == "number"
    assert page.console_errors == []


@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    from tests.system.test_browser import FLAGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.console_errors = []
        pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type in ("error", "warning") else None)
        pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
        yield pg
        browser.close()
