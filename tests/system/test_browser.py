"""The UI in real headless Chromium: sign in, submit a run, watch the timeline fill live, no console errors.

Needs Chromium (Debian's `chromium` package; `.ci/run` installs it). Screenshots go
to test-artifacts/.
"""

from __future__ import annotations

import shutil
import time

import pytest

from tests.helpers import ARTIFACTS

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


@pytest.fixture(scope="module")
def web_url(stack, workers):
    url, proc = stack.start_web()
    yield url
    stack.stop(proc)


@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page()
        pg.console_errors = []
        pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
        yield pg
        browser.close()


def test_submit_in_the_ui_and_watch_the_run_finish_live(page, web_url, team, stack, settings):
    """Signed in by a one-time link, the timeline grows step by step while the run works, then
    shows the final answer."""
    from datetime import timedelta

    import httpx

    from taskapp.store.db import session_factory
    from taskapp.store.models import Team
    from taskapp.store.teams import login_url, make_login_link

    team_id, _ = team
    with session_factory(settings).begin() as session:  # what `taskapp teams login-link` prints
        link = login_url(web_url, make_login_link(session, session.get(Team, team_id), timedelta(minutes=5)))
    httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 250})  # slow enough to watch
    try:
        page.goto(link)
        assert "#" not in page.url  # the token left the address bar
        page.click("#link-form button[type=submit]")
        page.wait_for_selector("header .team")
        page.goto(f"{web_url}/runs/new?workflow=research")
        page.fill("#f-question", "How do tides work?")
        page.click("#new-run button[type=submit]")
        page.wait_for_selector("#steps tr", timeout=15_000)
        counts = set()
        deadline = time.monotonic() + 60
        while page.locator("#run-status").inner_text() != "succeeded" and time.monotonic() < deadline:
            counts.add(page.locator("#steps tr").count())
            time.sleep(0.1)
        page.wait_for_selector("#output h3", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "ui-run.png"), full_page=True)
    finally:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 0})
    assert page.locator("#run-status").inner_text() == "succeeded"
    assert len(counts) >= 3, f"timeline did not fill live: row counts seen {sorted(counts)}"
    assert "How do tides work?" in page.locator("#output").inner_text()
    assert page.locator("#totals").inner_text().startswith(f"{page.locator('#steps tr').count()}/")
    page.goto(f"{web_url}/")
    assert page.locator("table.runs tbody tr").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "ui-runs.png"))
    page.goto(f"{web_url}/dashboard")
    assert page.locator("svg.chart rect").count() >= 4
    page.screenshot(path=str(ARTIFACTS / "ui-dashboard.png"), full_page=True)
    assert page.console_errors == []
