"""What an attacker, a careless deploy or a noisy client can do to the web process, and cannot.

Each test drives the real Flask app (or a real gunicorn / CLI process) against the real
PostgreSQL and Redis of the test stack.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from datetime import timedelta

import pytest

from taskapp.settings import SettingsError
from tests.helpers import app_with as _app
from tests.helpers import auth, form_token, make_team, taskapp_cli, ui_login

RUN = {"workflow": "summarize", "input": {"text": "Some text to summarise."}}


# --- 1. Sessions that cannot be forged ----------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "short-but-not-32-bytes"])
def test_the_web_app_refuses_to_start_without_a_secret_key_of_32_bytes(settings, secret):
    """No default secret: an unset or short SECRET_KEY stops create_app with a message naming it."""
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        _app(settings, secret_key=secret)


def test_gunicorn_exits_at_start_and_names_secret_key_when_it_is_unset(stack):
    """The Procfile's `web` line without SECRET_KEY: the process refuses to start and says why."""
    proc = stack.spawn(
        "web-no-secret",
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "web:create_app()"],
        SECRET_KEY=None,
    )
    try:
        assert proc.wait(30) != 0
    finally:
        stack.stop(proc)
    log = (stack.log_dir / "web-no-secret.log").read_text()
    assert "SECRET_KEY" in log and "32 bytes" in log


def _forged_cookie(app, payload: dict) -> str:
    """A session cookie signed with the app's own SECRET_KEY: the worst case, a leaked secret."""
    return app.session_interface.get_signing_serializer(app).dumps(payload)


def test_a_cookie_signed_with_the_secret_key_but_naming_no_live_session_reads_and_writes_nothing(settings):
    """Even with the signing key, a cookie naming a team (or a made-up session token) is no session."""
    app = _app(settings)
    team_id, key = make_team(settings)
    assert app.test_client().post("/api/runs", headers=auth(key), json=RUN).status_code == 202
    for payload in (
        {"team_id": str(team_id), "csrf": "x", "csrf_token": "x"},
        {"sid": "made-up-token", "csrf_token": "x"},
    ):
        client = app.test_client()
        client.set_cookie("session", _forged_cookie(app, payload))
        assert client.get("/api/runs").status_code == 401
        assert client.get("/").headers["Location"].endswith("/login")
        assert client.post("/api/runs", json=RUN, headers={"X-CSRF-Token": "x"}).status_code == 401
        # An empty token never matches either (the old form check compared "" with "").
        page = client.post("/runs/new", data={"workflow": "summarize", "text": "forged", "csrf_token": ""})
        assert page.status_code in (302, 400) and "/runs/" not in page.headers.get("Location", "")
    runs = app.test_client().get("/api/runs", headers=auth(key)).json["runs"]
    assert len(runs) == 1  # nothing was submitted with the forged cookies


def test_form_posts_without_their_token_are_refused_even_for_a_signed_in_session(client, team):
    """CSRF fails closed: a missing, empty or wrong token never matches."""
    _, key = team
    assert ui_login(client, key).status_code == 302
    for token in (None, "", "wrong"):
        data = {"workflow": "summarize", "text": "no token"} | ({} if token is None else {"csrf_token": token})
        assert client.post("/runs/new", data=data).status_code == 400
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still signed in: the refused sign-out did nothing


def test_signing_out_ends_the_session_on_every_web_process_at_once(settings, team):
    """Two web processes (two apps) share a browser's cookie; signing out on one ends it on both."""
    _, key = team
    one, two = _app(settings).test_client(), _app(settings).test_client()
    ui_login(one, key)
    two.set_cookie("session", one.get_cookie("session").value)
    assert two.get("/api/runs").status_code == 200
    token = form_token(one.get("/").data)
    assert one.post("/logout", data={"csrf_token": token}).status_code == 302
    assert two.get("/api/runs").status_code == 401
    assert two.get("/").headers["Location"].endswith("/login")


def test_revoking_a_key_stops_it_and_its_browser_sessions_at_once(settings, stack):
    """`taskapp teams revoke-key`: the bearer key and the sessions made from it stop on the next request."""
    name = f"revoke-{uuid.uuid4().hex[:8]}"
    made = taskapp_cli(stack, "teams", "create", name)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    app = _app(settings)
    api, browser = app.test_client(), app.test_client()
    assert api.get("/api/runs", headers=auth(key)).status_code == 200  # (this used to be cached for 30 s)
    ui_login(browser, key)
    assert browser.get("/api/runs").status_code == 200

    listed = taskapp_cli(stack, "teams", "keys", name)
    assert listed.returncode == 0 and key[:10] in listed.stdout and "active" in listed.stdout
    revoked = taskapp_cli(stack, "teams", "revoke-key", name, key[:10])
    assert revoked.returncode == 0, revoked.stderr

    answer = api.get("/api/runs", headers=auth(key))
    assert answer.status_code == 401 and answer.json["error"]["code"] == "unauthorized"
    assert browser.get("/api/runs").status_code == 401
    assert browser.get("/").headers["Location"].endswith("/login")
    again = taskapp_cli(stack, "teams", "revoke-key", name, key[:10])
    assert again.returncode != 0 and "no active key" in again.stderr


def test_the_session_cookie_is_secure_httponly_and_samesite_lax(settings, team):
    """Secure outside dev (SESSION_COOKIE_SECURE), always HttpOnly and SameSite=Lax."""
    _, key = team
    for secure in (True, False):
        client = _app(settings, session_cookie_secure=secure).test_client()
        cookie = ui_login(client, key).headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert ("Secure" in cookie) is secure


def _spend_link(client, token: str):
    page = client.get("/login").data
    assert b'id="link-form"' in page and b"login.js" in page
    return client.post("/login/link", data={"link": token, "csrf_token": form_token(page)})


def test_a_login_link_signs_in_once_and_not_after_it_expires(settings, stack, client):
    """`taskapp teams login-link` prints a one-time link whose token never reaches a server in a URL;
    it is spent by a CSRF-checked post, once; a key in the URL signs nobody in."""
    from taskapp.store.db import session_factory
    from taskapp.store.teams import (
        make_login_link,
        team_by_name,
    )

    name = f"link-{uuid.uuid4().hex[:8]}"
    key = taskapp_cli(stack, "teams", "create", name).stdout.strip()
    printed = taskapp_cli(stack, "teams", "login-link", name, TASKAPP_API_URL="https://taskapp.example")
    assert printed.returncode == 0, printed.stderr
    url = printed.stdout.strip()
    assert url.startswith("https://taskapp.example/login#link=") and key not in url
    token = url.partition("#link=")[2]

    assert client.post("/login/link", data={"link": token}).status_code == 400  # no CSRF token: nothing spent
    first = _spend_link(client, token)
    assert first.status_code == 302 and first.headers["Location"].endswith("/")
    assert client.get("/api/runs").status_code == 200
    other = _app(settings).test_client()
    assert _spend_link(other, token).status_code == 410  # spent
    assert other.get("/api/runs").status_code == 401

    with session_factory(settings).begin() as session:
        expired = make_login_link(session, team_by_name(session, name), timedelta(seconds=-1))
    assert _spend_link(other, expired).status_code == 410
    assert other.get(f"/login?key={key}").status_code == 200  # the old key-in-URL sign-in is gone
    assert other.get("/api/runs").status_code == 401


def test_every_answer_carries_security_headers_and_no_page_has_inline_script(client, team):
    """A content security policy without inline script, nosniff and no framing, on pages, API and errors."""
    _, key = team
    ui_login(client, key)
    run_id = client.post("/api/runs", headers=auth(key), json=RUN).json["id"]
    pages = ["/", "/runs/new", f"/runs/{run_id}", "/dashboard"]
    for path in [*pages, "/login", "/api/runs", "/healthz", "/static/app.css", "/no-such-page"]:
        resp = client.get(path)
        csp = resp.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp and resp.headers.get("X-Frame-Options") == "DENY", path
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
    for path in pages:
        html = client.get(path).data.decode()
        inline = [
            tag
            for tag in re.findall(r"<script\b[^>]*>", html)
            if "src=" not in tag and 'type="application/json"' not in tag
        ]
        assert not inline, (path, inline)
        assert not re.search(r"\son[a-z]+=", html), path  # no inline event handlers either


def test_an_open_event_stream_ends_when_its_key_is_revoked_or_its_session_signs_out(settings, monkeypatch):
    """A stream outlives the request that checked its caller: it re-checks, and ends."""
    from taskapp.store.db import session_factory
    from taskapp.store.models import Team
    from taskapp.store.runs import create_run
    from taskapp.store.teams import (
        issue_api_key,
        revoke_key,
    )
    from web import stream

    monkeypatch.setattr(stream, "AUTH_RECHECK_S", 0.2)
    app = _app(settings, sse_keepalive_s=0.2)
    team_id, key = make_team(settings)
    with session_factory(settings).begin() as session:  # a run that never moves: its stream stays open
        run, _ = create_run(session, team_id=team_id, workflow="summarize", input={"text": "x"}, options={})
        run.status = "running"

    def ended_after(client, revoke, **kwargs) -> bool:
        response = client.get(f"/api/runs/{run.id}/events", buffered=False, **kwargs)
        assert response.status_code == 200
        chunks = iter(response.response)
        next(chunks)  # the stream is open
        revoke()
        deadline = time.monotonic() + 10
        return all(time.monotonic() <= deadline for _ in chunks)

    def revoke_the_key():
        with session_factory(settings).begin() as session:
            assert revoke_key(session, session.get(Team, team_id), key[:10]) == 1

    browser = app.test_client()
    with session_factory(settings).begin() as session:
        second_key = issue_api_key(session, session.get(Team, team_id))
    ui_login(browser, second_key)
    token = form_token(browser.get("/").data)
    assert ended_after(browser, lambda: browser.post("/logout", data={"csrf_token": token}))
    assert ended_after(app.test_client(), revoke_the_key, headers=auth(key))
    with session_factory(settings).begin() as session:
        session.get(type(run), run.id).status = "cancelled"
