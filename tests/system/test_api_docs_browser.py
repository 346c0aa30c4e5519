"""The API docs page in real headless Chromium, under a strict Content-Security-Policy.

Needs Chromium (Debian's `chromium` package; `.ci/run` installs it). The policy is
added to every response here, so the page is shown to run without inline script and
without anything from another origin, whatever headers the server sends itself.
A screenshot goes to test-artifacts/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.helpers import ARTIFACTS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@pytest.fixture(scope="module")
def web_url(stack) -> Iterator[str]:
    url, proc = stack.start_web()
    yield url
    stack.stop(proc)


def test_swagger_ui_shows_every_operation_under_a_strict_csp(web_url):
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    origins: set[str] = set()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: origins.add(r.url.split("/", 3)[2]))

        def with_csp(route) -> None:
            response = route.fetch()
            route.fulfill(response=response, headers={**response.headers, "content-security-policy": CSP})

        page.route("**/*", with_csp)
        operations = sum(len(ops) for ops in page.request.get(f"{web_url}/api/openapi.json").json()["paths"].values())
        page.goto(f"{web_url}/api/docs")
        page.wait_for_selector(".opblock", timeout=15_000)
        shown = page.locator(".opblock").count()
        title = page.locator(".info .title").inner_text()
        page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=True)
        browser.close()
    assert shown == operations >= 10 and title.startswith("taskapp API")
    assert not problems, problems  # a CSP violation is reported on the console
    assert origins == {web_url.split("/", 3)[2]}  # nothing from a CDN or a validator service
