"""`taskapp submit`, and the API client the commands that talk to a running taskapp share."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
import httpx

from taskapp.domain.status import FINAL_RUN_STATUSES
from taskapp.settings import get_settings


@click.command()
@click.argument("workflow")
@click.option("--input", "input_json", required=True, help="The run's input as JSON.")
@click.option("--version", type=click.IntRange(min=1), default=None, help="The workflow's version (default: latest).")
@click.option("--follow", is_flag=True, help="Print step events until the run ends.")
@click.option("--idempotency-key", default=None)
@click.option("--priority", type=click.Choice(["batch", "interactive"]), default="batch")
def submit(
    workflow: str, input_json: str, version: int | None, follow: bool, idempotency_key: str | None, priority: str
) -> None:
    """Submit a run through the API (TASKAPP_API_URL, TASKAPP_API_KEY)."""
    try:
        payload = json.loads(input_json)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from None
    body: dict[str, Any] = {"workflow": workflow, "input": payload, "options": {"priority": priority}}
    if version is not None:
        body["version"] = version
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with api_client(headers) as client:
        run = api_call(client, "POST", "/api/runs", json=body)
        click.echo(run["id"])
        if follow:
            sys.exit(_follow(client, run["links"]["self"]))


def api_client(headers: dict[str, str] | None = None) -> httpx.Client:
    """A client of the API at TASKAPP_API_URL with the caller's key (TASKAPP_API_KEY)."""
    settings = get_settings()
    if not settings.api_key:
        raise click.ClickException("set TASKAPP_API_KEY (make run prints the demo team's key)")
    auth = {"Authorization": f"Bearer {settings.api_key}"}
    return httpx.Client(base_url=settings.api_url, headers=auth | (headers or {}), timeout=10)


def send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One API call; an unreachable API is a message, not a traceback."""
    try:
        return client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise click.ClickException(f"cannot reach the API at {client.base_url} (TASKAPP_API_URL): {exc}") from None


def api_call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One API call's JSON answer; an error answer is a message, not a traceback."""
    resp = send(client, method, path, **kwargs)
    if resp.status_code >= 400:
        raise click.ClickException(f"{resp.status_code}: {resp.text}")
    return resp.json()


def _follow(client: httpx.Client, path: str) -> int:
    """Poll the run, printing each step's status changes; the exit status says how it ended."""
    seen: dict[str, str] = {}
    while True:
        run = api_call(client, "GET", path)
        for step in run["steps"]:
            if seen.get(step["id"]) != step["status"]:
                seen[step["id"]] = step["status"]
                click.echo(f"  step {step['seq']:>2} {step['agent']:<11} {step['status']}", err=True)
        if run["status"] in FINAL_RUN_STATUSES:
            click.echo(f"run {run['status']}", err=True)
            click.echo(json.dumps(run.get("output") or {"error": run.get("error")}, indent=2))
            return 0 if run["status"] == "succeeded" else 1
        time.sleep(0.5)
