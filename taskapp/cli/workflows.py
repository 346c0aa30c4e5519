"""`taskapp workflows`: validate definition files, push them as versions, list what a team can run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx

from taskapp.cli.api import api_call, api_client, send
from taskapp.settings import get_settings


@click.group()
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
    with api_client() as client:
        resp = send(
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
    with api_client() as client:
        listed = api_call(client, "GET", "/api/workflows")["workflows"]
    rows = [(w["name"], w["scope"], f"v{w['version']}", w["description"]) for w in listed]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(("NAME", "SCOPE", "VERSION"))]
    for row in [("NAME", "SCOPE", "VERSION", "DESCRIPTION"), *rows]:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
