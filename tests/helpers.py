"""Helpers the tests share (fixtures stay in conftest.py)."""

from __future__ import annotations

import re
import subprocess
import sys

_TOKEN = re.compile(rb'name="csrf_token" value="([^"]+)"')


def form_token(page: bytes) -> str:
    """The CSRF token a rendered page put in its forms, as a browser would post it back."""
    found = _TOKEN.search(page)
    assert found, "the page has no form token"
    return found.group(1).decode()


def ui_login(client, key: str):
    """Sign a test client in through the login form; the answer to the post."""
    token = form_token(client.get("/login").data)
    return client.post("/login", data={"api_key": key, "csrf_token": token})


def taskapp_cli(stack, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    """Run the `taskapp` command as a deployer would, with the test stack's environment."""
    return subprocess.run([sys.executable, "-m", "taskapp.cli", *args], env=stack.env(**env),
                          capture_output=True, text=True, timeout=60)
