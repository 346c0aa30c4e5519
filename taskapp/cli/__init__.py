"""The `taskapp` command: the dev stack, migrations, the processes of a deployment, the Gemini
simulator; teams (taskapp.cli.teams), runs (taskapp.cli.api) and workflows (taskapp.cli.workflows)."""

from __future__ import annotations

import sys

import click

from taskapp.cli.api import submit
from taskapp.cli.teams import teams
from taskapp.cli.workflows import workflows
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


main.add_command(teams)
main.add_command(submit)
main.add_command(workflows)


def run() -> None:
    try:
        main()
    except SettingsError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
