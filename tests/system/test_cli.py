"""The `taskapp` command against the workers: submit a run and follow it to its answer."""

from __future__ import annotations

import json
import uuid

from tests.helpers import make_team, taskapp_cli, wait_for_run


def test_cli_submits_and_follows_a_run_to_its_answer(stack, settings, workers):
    """`taskapp submit --follow` against the real web server: the run id, each step's progress, the
    stored output, and an exit status that says how the run ended."""
    _, key = make_team(settings)
    url, web = stack.start_web()
    try:
        done = taskapp_cli(
            stack,
            "submit",
            "summarize",
            "--input",
            '{"text": "a CLI follows this run"}',
            "--priority",
            "interactive",
            "--follow",
            TASKAPP_API_URL=url,
            TASKAPP_API_KEY=key,
        )
        assert done.returncode == 0, done.stderr
        run_id, _, output = done.stdout.partition("\n")
        run = wait_for_run(settings, uuid.UUID(run_id))
        assert run.status == "succeeded" and json.loads(output) == run.output
        assert "summarizer" in done.stderr and "succeeded" in done.stderr
        assert done.stderr.strip().endswith("run succeeded")

        unknown = taskapp_cli(
            stack, "submit", "no-such-workflow", "--input", "{}", TASKAPP_API_URL=url, TASKAPP_API_KEY=key
        )
        assert unknown.returncode == 1 and "no-such-workflow" in unknown.stderr and "Traceback" not in unknown.stderr
    finally:
        stack.stop(web)
    down = taskapp_cli(stack, "submit", "summarize", "--input", "{}", TASKAPP_API_URL=url, TASKAPP_API_KEY=key)
    assert down.returncode == 1 and "cannot reach the API" in down.stderr and "Traceback" not in down.stderr
