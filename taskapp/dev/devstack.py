"""`taskapp dev`: the whole stack in the foreground, on embedded services where no URLs are set.

Starts PostgreSQL and Redis (embedded, data under TASKAPP_DATA_DIR) unless
DATABASE_URL / REDIS_URL name servers, applies migrations, makes a demo team,
then runs Procfile.dev (web, worker, flower, and the Gemini simulator when there
is no GEMINI_API_KEY) through honcho. Ctrl-C stops everything it started; the next
run reuses the data.
"""

from __future__ import annotations

import secrets
import sys
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

from honcho.environ import parse_procfile
from honcho.manager import Manager

from taskapp.catalog.shared import release
from taskapp.dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from taskapp.dev.localstack import EXAMPLES
from taskapp.settings import Settings, child_environment, load_settings
from taskapp.store.db import session_factory
from taskapp.store.teams import (
    create_team,
    issue_api_key,
    login_url,
    make_login_link,
    team_by_name,
    team_for_key,
)

PROCFILE = Path(__file__).resolve().parent / "Procfile.dev"  # package data: works from an install too


def run(settings: Settings) -> int:
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    with ExitStack() as stack:
        if not settings.database_url:
            pg = EmbeddedPostgres(data / "postgres")
            print(f"starting embedded PostgreSQL in {pg.data_dir} …", flush=True)
            env["DATABASE_URL"] = pg.start()
            stack.callback(pg.stop)
        if not settings.redis_url:
            rd = EmbeddedRedis(data / "redis")
            print(f"starting embedded Redis on port {rd.port} …", flush=True)
            env["REDIS_URL"] = rd.start()
            stack.callback(rd.stop)
        with_sim = not settings.gemini_api_key and not settings.gemini_base_url
        if with_sim:
            port = settings.sim_port or free_port()
            env["GEMINI_BASE_URL"] = f"http://127.0.0.1:{port}"
            env["GEMINI_SIM_PORT"] = str(port)
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth or _remembered(
            data / "flower_auth", lambda: "admin:" + secrets.token_urlsafe(12)
        )
        # The web process refuses to start without a real secret: dev makes one and keeps it,
        # so sessions survive a restart. Plain http on localhost: cookies cannot be Secure-only.
        env["SECRET_KEY"] = settings.secret_key or _remembered(data / "secret_key", lambda: secrets.token_urlsafe(48))
        env["SESSION_COOKIE_SECURE"] = "false"
        # The shipped examples (research, summarize, support) unless the deployer names their own.
        env["WORKFLOWS_PATH"] = settings.workflows_path or str(EXAMPLES)
        dev = load_settings(child_environment(**env))
        print("applying migrations and storing the shared workflows …", flush=True)
        release(dev)
        api_key = ensure_demo_team(dev, data / "demo_api_key")
        _banner(dev, api_key, login_link(dev), with_sim)
        manager = Manager()
        child_env = child_environment(**env)
        for entry in parse_procfile(PROCFILE.read_text()).processes.items():
            name, command = entry
            if name == "sim" and not with_sim:
                continue
            manager.add_process(name, command, env=child_env)
        manager.loop()
        return manager.returncode or 0


def ensure_demo_team(settings: Settings, key_file: Path) -> str:
    """The demo team's API key, made on first run and remembered in the data directory."""
    factory = session_factory(settings)
    with factory.begin() as session:
        team = team_by_name(session, "demo")
        if team is not None and key_file.exists():
            key = key_file.read_text().strip()
            if team_for_key(session, key) is not None:
                return key
        if team is None:
            team, key = create_team(session, "demo")
        else:
            key = issue_api_key(session, team)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


def login_link(settings: Settings) -> str:
    """A one-time sign-in link for the demo team (no API key in a URL, so none in access logs)."""
    with session_factory(settings).begin() as session:
        team = team_by_name(session, "demo")
        assert team is not None, "the dev stack creates the demo team before it signs anyone in"
        token = make_login_link(session, team, timedelta(seconds=settings.login_link_ttl_s))
    return login_url(f"http://127.0.0.1:{settings.port}", token)


def _remembered(path: Path, make) -> str:
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.write_text(value)
    path.chmod(0o600)
    return value


def _banner(settings: Settings, api_key: str, link: str, with_sim: bool) -> None:
    url = f"http://127.0.0.1:{settings.port}"
    minutes = settings.login_link_ttl_s // 60
    lines = [
        "",
        "taskapp is starting:",
        f"  UI        {link}",
        f"            (signs you in once, within {minutes} min; another: taskapp teams login-link demo)",
        f"  API key   {api_key}   (team 'demo')",
        f"  API       curl -H 'Authorization: Bearer {api_key}' {url}/api/workflows",
        f"  Flower    http://127.0.0.1:{settings.flower_port}  (login {settings.flower_basic_auth})",
        f"  Gemini    {'simulator at ' + str(settings.gemini_base_url) if with_sim else 'Google (GEMINI_API_KEY)'}",
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)
    sys.stdout.flush()
