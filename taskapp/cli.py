"""The `taskapp` command: dev stack, submitting runs, teams, migrations, the Gemini simulator."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click
import httpx

from taskapp.domain.status import FINAL_RUN_STATUSES
from taskapp.settings import SettingsError, get_settings


@click.group()
def main() -> None:
    """taskapp: multi-step LLM agent runs on Celery, PostgreSQL, Redis and Gemini."""


@main.command()
def dev() -> None:
    """Start the whole stack in the foreground (embedded services where no URLs are set)."""
    from taskapp.dev import devstack

    sys.exit(devstack.run(get_settings()))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations and store the shared workflows of WORKFLOWS_PATH (the Procfile's release phase)."""
    from taskapp.catalog.shared import release

    for name, version, created in release(get_settings()):
        click.echo(f"shared workflow {name}: version {version}{' (new)' if created else ''}")
    click.echo("database is up to date")


@main.group()
def teams() -> None:
    """Teams and their API keys."""


_share_options = [
    click.option(
        "--max-concurrent-runs",
        type=click.IntRange(min=1),
        default=None,
        help="Runs of this team that may run at once; more wait, queued.",
    ),
    click.option(
        "--daily-tokens",
        type=click.IntRange(min=1),
        default=None,
        help="Tokens this team may use per day (midnight US Pacific); then its runs fail, saying why.",
    ),
    click.option(
        "--operator/--no-operator",
        default=None,
        help="Operators see the whole fleet's metrics (every team, queue depths).",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def share_options(func: F) -> F:
    for option in reversed(_share_options):
        func = option(func)
    return func


@teams.command("create")
@click.argument("name")
@share_options
def teams_create(name: str, max_concurrent_runs: int | None, daily_tokens: int | None, operator: bool | None) -> None:
    """Create a team and print its API key (shown only once)."""
    from taskapp.store.db import session_scope
    from taskapp.store.teams import create_team, team_by_name

    with session_scope() as session:
        if team_by_name(session, name):
            raise click.ClickException(f"team {name!r} exists; use `taskapp teams key {name}` for a new key")
        team, key = create_team(session, name)
        team.max_concurrent_runs, team.daily_token_budget = max_concurrent_runs, daily_tokens
        team.is_operator = bool(operator)
    click.echo(key)


def _team(session: Any, name: str) -> Any:
    """The team called `name`, or a message that says there is none."""
    from taskapp.store.teams import team_by_name

    team = team_by_name(session, name)
    if team is None:
        raise click.ClickException(f"no team {name!r}")
    return team


@teams.command("set")
@click.argument("name")
@share_options
@click.option("--unlimited", is_flag=True, help="Remove the team's own limits.")
def teams_set(
    name: str, max_concurrent_runs: int | None, daily_tokens: int | None, operator: bool | None, unlimited: bool
) -> None:
    """Change a team's share of the quota, or whether it is an operator."""
    from taskapp.store.db import session_scope

    with session_scope() as session:
        team = _team(session, name)
        if operator is not None:
            team.is_operator = operator
        if unlimited:
            team.max_concurrent_runs = team.daily_token_budget = None
        if max_concurrent_runs is not None:
            team.max_concurrent_runs = max_concurrent_runs
        if daily_tokens is not None:
            team.daily_token_budget = daily_tokens
        click.echo(
            f"{name}: max concurrent runs {team.max_concurrent_runs or 'unlimited'}, "
            f"daily tokens {team.daily_token_budget or 'unlimited'}"
            f"{', operator' if team.is_operator else ''}"
        )


@teams.command("key")
@click.argument("name")
def teams_key(name: str) -> None:
    """Issue another API key for an existing team."""
    from taskapp.store.db import session_scope
    from taskapp.store.teams import issue_api_key

    with session_scope() as session:
        key = issue_api_key(session, _team(session, name))
    click.echo(key)


@teams.command("keys")
@click.argument("name")
def teams_keys(name: str) -> None:
    """List a team's keys by prefix (the keys themselves are never stored)."""
    from taskapp.store.db import session_scope
    from taskapp.store.teams import list_keys

    with session_scope() as session:
        for key in list_keys(session, _team(session, name)):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            click.echo(f"{key.prefix}…  created {key.created_at:%Y-%m-%d %H:%M}  {state}")


@teams.command("revoke-key")
@click.argument("name")
@click.argument("prefix")
def teams_revoke_key(name: str, prefix: str) -> None:
    """Revoke a key (by the prefix `teams keys` shows): it and its browser sessions stop at once."""
    from taskapp.store.db import session_scope
    from taskapp.store.teams import revoke_key

    with session_scope() as session:
        if not revoke_key(session, _team(session, name), prefix):
            raise click.ClickException(f"team {name!r} has no active key starting {prefix[:10]!r}")
    click.echo(f"revoked {prefix[:10]}…")


@teams.command("login-link")
@click.argument("name")
def teams_login_link(name: str) -> None:
    """Print a one-time sign-in link for the UI (short-lived; bound to the team's newest key)."""
    from taskapp.store.db import session_scope
    from taskapp.store.teams import NoActiveKey, login_url, make_login_link

    settings = get_settings()
    with session_scope() as session:
        try:
            token = make_login_link(session, _team(session, name), timedelta(seconds=settings.login_link_ttl_s))
        except NoActiveKey as exc:
            raise click.ClickException(f"{exc}; make one with `taskapp teams key {name}`") from None
    click.echo(login_url(settings.api_url, token))


@main.command()
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
    with _api_client(headers) as client:
        run = _api(client, "POST", "/api/runs", json=body)
        click.echo(run["id"])
        if follow:
            sys.exit(_follow(client, run["links"]["self"]))


def _api_client(headers: dict[str, str] | None = None) -> httpx.Client:
    """A client of the API at TASKAPP_API_URL with the caller's key (TASKAPP_API_KEY)."""
    settings = get_settings()
    if not settings.api_key:
        raise click.ClickException("set TASKAPP_API_KEY (make run prints the demo team's key)")
    auth = {"Authorization": f"Bearer {settings.api_key}"}
    return httpx.Client(base_url=settings.api_url, headers=auth | (headers or {}), timeout=10)


def _send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One API call; an unreachable API is a message, not a traceback."""
    try:
        return client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise click.ClickException(f"cannot reach the API at {client.base_url} (TASKAPP_API_URL): {exc}") from None


def _api(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One API call's JSON answer; an error answer is a message, not a traceback."""
    resp = _send(client, method, path, **kwargs)
    if resp.status_code >= 400:
        raise click.ClickException(f"{resp.status_code}: {resp.text}")
    return resp.json()


def _follow(client: httpx.Client, path: str) -> int:
    """Poll the run, printing each step's status changes; the exit status says how it ended."""
    seen: dict[str, str] = {}
    while True:
        run = _api(client, "GET", path)
        for step in run["steps"]:
            if seen.get(step["id"]) != step["status"]:
                seen[step["id"]] = step["status"]
                click.echo(f"  step {step['seq']:>2} {step['agent']:<11} {step['status']}", err=True)
        if run["status"] in FINAL_RUN_STATUSES:
            click.echo(f"run {run['status']}", err=True)
            click.echo(json.dumps(run.get("output") or {"error": run.get("error")}, indent=2))
            return 0 if run["status"] == "succeeded" else 1
        time.sleep(0.5)


@main.group()
def workflows() -> None:
    """Workflow definitions: check a file, push it as a new version for your team, list what you can run."""


@workflows.command("schema")
def workflows_schema() -> None:
    """Print the JSON Schema of definitions (docs/workflow.schema.json; GET /api/workflows/schema)."""
    from taskapp.domain.definitions.model import definition_json_schema

    click.echo(json.dumps(definition_json_schema(), indent=2))


@workflows.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--shared", is_flag=True, help="Check as a deployer's shared file (may batch across teams).")
def workflows_validate(files: tuple[Path, ...], shared: bool) -> None:
    """Check definition files as the API would (GEMINI_MODELS; the tools of WORKFLOWS_PATH).

    Prints `ok: NAME` for each good file, else every problem as `FILE: path: reason` (exit 1).
    """
    from taskapp.catalog.files import DefinitionFileError, check_file
    from taskapp.catalog.shared import shared_definitions

    settings = get_settings()
    errors: list[str] = []
    try:
        shared_definitions(settings)  # imports WORKFLOWS_PATH's tools, so definitions may name them
    except DefinitionFileError as exc:
        errors += _problem_lines(exc)
    for path in files:
        try:
            definition = check_file(path, models=settings.gemini_models, shared=shared)
        except DefinitionFileError as exc:
            errors += _problem_lines(exc)
        else:
            click.echo(f"ok: {definition.name}")
    for line in errors:
        click.echo(line)
    if errors:
        sys.exit(1)


def _problem_lines(exc: Any) -> list[str]:
    return [f"{file}: {problem.path or '(top)'}: {problem.reason}" for file, problem in exc.errors]


@workflows.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="The workflow's name (default: the file's `name`).")
def workflows_push(file: Path, name: str | None) -> None:
    """Store FILE as a new version of the workflow for your team (PUT /api/workflows/NAME).

    Prints the version; an invalid definition prints every problem as `FILE: path: reason` (exit 1).
    """
    from taskapp.catalog.files import DefinitionFileError, read_document

    try:
        document = read_document(file)
    except DefinitionFileError as exc:
        for line in _problem_lines(exc):
            click.echo(line)
        sys.exit(1)
    name = name or (document.get("name") if isinstance(document, dict) else None)
    if not isinstance(name, str) or not name:
        raise click.ClickException(f"{file}: name: missing (give the workflow a `name`, or use --name)")
    media = "application/json" if file.suffix == ".json" else "application/yaml"
    with _api_client() as client:
        resp = _send(
            client,
            "PUT",
            f"/api/workflows/{quote(name, safe='')}",
            content=file.read_bytes(),
            headers={"Content-Type": media},
        )
    body = _json_or_none(resp)
    error = (body or {}).get("error") if isinstance(body, dict) else None
    if resp.status_code == 422 and error and error.get("code") == "invalid_definition":
        for detail in error.get("details") or []:
            click.echo(f"{file}: {detail.get('path') or '(top)'}: {detail.get('reason')}")
        sys.exit(1)
    if resp.status_code not in (200, 201) or not isinstance(body, dict):
        raise click.ClickException(f"{resp.status_code}: {resp.text}")
    if resp.status_code == 201:
        click.echo(f"{body['name']}: version {body['version']} stored ({body['content_hash'][:12]})")
    else:
        click.echo(f"{body['name']}: unchanged, still version {body['version']} ({body['content_hash'][:12]})")


def _json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


@workflows.command("list")
def workflows_list() -> None:
    """The workflows your team can run: its own and the shared ones, each at its latest version."""
    with _api_client() as client:
        listed = _api(client, "GET", "/api/workflows")["workflows"]
    rows = [(w["name"], w["scope"], f"v{w['version']}", w["description"]) for w in listed]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(("NAME", "SCOPE", "VERSION"))]
    for row in [("NAME", "SCOPE", "VERSION", "DESCRIPTION"), *rows]:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])


@main.command("gemini-sim")
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=None, help="Default: GEMINI_SIM_PORT or 8089.")
@click.option("--latency-ms", type=int, default=None, help="Default: GEMINI_SIM_LATENCY_MS or 150.")
def gemini_sim(host: str, port: int | None, latency_ms: int | None) -> None:
    """Serve the Gemini REST API locally (offline use, tests, benchmarks)."""
    from taskapp.dev.gemini_sim import server as simulator

    settings = get_settings()
    simulator.serve(
        host, settings.sim_port if port is None else port, settings.sim_latency_ms if latency_ms is None else latency_ms
    )


@main.command()
@click.option("--port", type=int, default=None, help="Default: PORT on a flower dyno, else FLOWER_PORT.")
def flower(port: int | None) -> None:
    """Start Flower with basic auth and bounded memory; refuses to run without credentials."""
    settings = get_settings()
    if not settings.flower_basic_auth:
        raise click.ClickException("FLOWER_BASIC_AUTH (user:password) is required: Flower never runs open")
    from taskapp import flower_server

    sys.exit(
        flower_server.serve(
            [
                f"--port={port or settings.flower_port}",
                f"--basic-auth={settings.flower_basic_auth}",
                "--max_tasks=10000",
                "--persistent=False",
                "--purge_offline_workers=300",
            ]
        )
    )


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("role", type=click.Choice(["orchestration", "llm", "all"]))
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(role: str, celery_args: tuple[str, ...]) -> None:
    """A Celery worker node of one role: `orchestration` (prefork), `llm` (LLM_WORKER_POOL) or `all`.

    Further arguments go to `celery worker` (e.g. --loglevel INFO). The process becomes
    Celery (exec), so signals from the platform reach it directly.
    """
    import os
    from typing import cast

    from taskapp.worker_roles import Role, worker_argv

    argv = worker_argv(cast(Role, role), get_settings(), list(celery_args))
    os.execv(argv[0], argv)


@main.command("flusher")
def flusher_cmd() -> None:
    """Flush batch buffers on their windows and run the sweeper (workers start one each by default)."""
    from taskapp.pipeline import flusher

    flusher.main()


def run() -> None:
    try:
        main()
    except SettingsError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
