"""`taskapp workflows validate | push | list | schema` and `taskapp submit --version`, as a team runs them:
the real command in its own process, against a real gunicorn, PostgreSQL and Redis."""

from __future__ import annotations

import copy
import json
import textwrap

import pytest
import yaml

from tests.helpers import ROOT, auth, taskapp_cli
from tests.integration.test_workflows_api import EXAMPLES, TRIAGE


@pytest.fixture(scope="module")
def web_url(stack):
    url, proc = stack.start_web()
    yield url
    stack.stop(proc)


def _write(path, document) -> str:
    path.write_text(yaml.safe_dump(document, sort_keys=False) if path.suffix != ".json" else json.dumps(document))
    return str(path)


def test_validate_says_ok_for_good_files_and_exits_1_with_every_problem_of_a_bad_one(stack, tmp_path):
    good = taskapp_cli(
        stack, "workflows", "validate", str(EXAMPLES / "research.yaml"), str(EXAMPLES / "summarize.yaml")
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines() == ["ok: research", "ok: summarize"]

    bad = copy.deepcopy(TRIAGE)
    bad["stages"][1]["agent"] = "ghost"
    bad["agents"]["specialist"]["model"] = "gemini-9-ultra"
    bad["agents"]["specialist"]["batch"] = {"across_teams": True}
    path = _write(tmp_path / "triage.json", bad)
    result = taskapp_cli(stack, "workflows", "validate", path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{path}: stages.1.agent: no agent 'ghost' in agents (classifier, reviewer, specialist)" in lines
    assert any(
        line.startswith(f"{path}: agents.specialist.model: model 'gemini-9-ultra' is not served") for line in lines
    )
    assert any(line.startswith(f"{path}: agents.specialist.batch.across_teams: ") for line in lines)
    assert "Traceback" not in result.stderr
    # As the deployer's shared file, batching across teams is allowed (the other two problems stay).
    shared = taskapp_cli(stack, "workflows", "validate", "--shared", path)
    assert shared.returncode == 1 and "across_teams" not in shared.stdout and "ghost" in shared.stdout


def test_validate_names_where_a_file_does_not_parse(stack, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nstages: [\n")
    result = taskapp_cli(stack, "workflows", "validate", str(path))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{path}: line ") and "does not parse" in result.stdout
    missing = taskapp_cli(stack, "workflows", "validate", str(tmp_path / "nothing.yaml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_validate_knows_the_tools_of_workflows_path(stack, tmp_path):
    """A definition naming a tool registered by WORKFLOWS_PATH's modules is valid with it, not without."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tools.py").write_text(
        textwrap.dedent(
            '''
            from taskapp.tools import tool

            @tool(args_schema={"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]})
            def stock_level(sku: str) -> int:
                """How many of an item are in stock."""
                return 3
            '''
        )
    )
    with_tool = copy.deepcopy(TRIAGE)
    with_tool["agents"]["specialist"]["tools"] = ["stock_level"]
    path = _write(tmp_path / "triage.yaml", with_tool)
    known = taskapp_cli(stack, "workflows", "validate", path, WORKFLOWS_PATH=str(shared))
    assert known.returncode == 0 and known.stdout.strip() == "ok: triage", known.stdout + known.stderr
    unknown = taskapp_cli(stack, "workflows", "validate", path, WORKFLOWS_PATH=None)
    assert unknown.returncode == 1
    assert f"{path}: agents.specialist.tools.0: no tool 'stock_level' is registered" in unknown.stdout


def test_push_list_and_submit_a_version_through_the_api(stack, settings, team, web_url, tmp_path):
    """push: version 1, then unchanged, then version 2; a bad file prints every problem (exit 1) and
    stores nothing; list shows the team's own and the shared ones; submit --version pins the run."""
    import httpx

    _, key = team
    env = {"TASKAPP_API_URL": web_url, "TASKAPP_API_KEY": key}
    path = tmp_path / "triage.yaml"
    _write(path, TRIAGE)
    first = taskapp_cli(stack, "workflows", "push", str(path), **env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("triage: version 1 stored (")
    again = taskapp_cli(stack, "workflows", "push", str(path), **env)
    assert again.returncode == 0 and again.stdout.startswith("triage: unchanged, still version 1")
    changed = copy.deepcopy(TRIAGE)
    changed["description"] = "Second version."
    _write(path, changed)
    assert taskapp_cli(stack, "workflows", "push", str(path), **env).stdout.startswith("triage: version 2 stored")

    bad = copy.deepcopy(TRIAGE)
    bad["name"] = "broken"
    bad["stages"][3]["next"] = "classify"
    bad["agents"]["reviewer"]["model"] = "gemini-9-ultra"
    bad_path = tmp_path / "broken.json"
    _write(bad_path, bad)
    refused = taskapp_cli(stack, "workflows", "push", str(bad_path), **env)
    assert refused.returncode == 1
    assert f"{bad_path}: stages.3.next: must name a later stage" in refused.stdout
    assert f"{bad_path}: agents.reviewer.model: model 'gemini-9-ultra' is not served" in refused.stdout

    listed = taskapp_cli(stack, "workflows", "list", **env)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0] == ["NAME", "SCOPE", "VERSION", "DESCRIPTION"]
    assert ["triage", "team", "v2", "Second", "version."] in rows
    assert any(r[:3] == ["research", "shared", "v1"] for r in rows)
    assert not any(r[0] == "broken" for r in rows)

    run = taskapp_cli(
        stack, "submit", "triage", "--version", "1", "--input", json.dumps({"ticket": "Charged twice."}), **env
    )
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.strip()
    got = httpx.get(f"{web_url}/api/runs/{run_id}", headers=auth(key), timeout=10).json()
    assert got["workflow"] == "triage" and got["workflow_version"] == 1
    unknown = taskapp_cli(stack, "submit", "triage", "--version", "9", "--input", '{"ticket": "x"}', **env)
    assert unknown.returncode == 1 and "422" in unknown.stderr and "no version 9" in unknown.stderr


def test_push_without_a_key_or_a_name_says_what_is_missing(stack, tmp_path):
    path = tmp_path / "triage.yaml"
    _write(path, TRIAGE)
    no_key = taskapp_cli(stack, "workflows", "push", str(path), TASKAPP_API_KEY=None)
    assert no_key.returncode == 1 and "TASKAPP_API_KEY" in no_key.stderr
    unnamed = {k: v for k, v in TRIAGE.items() if k != "name"}
    _write(path, unnamed)
    no_name = taskapp_cli(stack, "workflows", "push", str(path), TASKAPP_API_KEY="tk_x")
    assert no_name.returncode == 1 and "name: missing" in no_name.stderr


def test_the_schema_command_prints_what_docs_has(stack):
    result = taskapp_cli(stack, "workflows", "schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads((ROOT / "docs" / "workflow.schema.json").read_text())
