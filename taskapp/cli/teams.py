"""`taskapp teams`: teams, their shares of the quota, API keys and one-time login links."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import click

from taskapp.settings import get_settings


@click.group()
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
