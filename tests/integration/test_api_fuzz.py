"""Schemathesis fuzzes every operation of the OpenAPI document against a live gunicorn server.

Its CLI (`st run`) sends, for each operation, the document's examples, then boundary and
invalid values (coverage), then random requests (fuzzing), authenticated as a team of the
test's own. A failure is any 5xx, or an answer whose status, media type or body the
document does not describe. The CLI's report (each failure with a curl command that
reproduces it) is the test's failure message, and is kept in test-artifacts/schemathesis.txt.

The CLI rather than schemathesis's pytest plugin: the plugin's fixture-loaded schemas
(needed for a server the test starts) rely on pytest internals that pytest 9.2 changed.

Fuzz dictionaries add values random generation rarely reaches (NUL and other awkward
strings, integers past 32 and 64 bits, extreme floats) to every string and number sent.
Operations on one run (`/api/runs/{run_id}...`) are sent a cancelled run of the team about
half the time, so real runs are checked too and not only 404s (a cancelled run, because its
event stream ends after its last event instead of waiting for workers; for the same reason
the stateful phase, which would follow new queued runs' streams, is off).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from taskapp.settings import child_environment
from tests.helpers import ARTIFACTS, auth, make_team

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = 100  # random requests per operation, after the examples and boundary values (~1 min in all)
REQUEST_TIMEOUT_S = 3  # an event stream is read this long at most (a stream may never end)
RUN_TIMEOUT_S = 300
AWKWARD_STRINGS = ["a\x00b", "\x00", " ", "\t\n", "é€𝄞", "%00", "\\", '"', "9223372036854775808"]
AWKWARD_INTEGERS = [0, -1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**64]
AWKWARD_NUMBERS = [0.0, -0.0, 1e308, -1e308, 5e-324]


@dataclass(frozen=True)
class LiveApi:
    url: str
    key: str = field(repr=False)  # kept out of pytest's failure report
    run_ids: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def live_api(stack, settings) -> Iterator[LiveApi]:
    """gunicorn as the Procfile runs it, a team, and two runs of that team, both cancelled."""
    # Hundreds of requests a minute from one team: past its rate limit, every operation would
    # answer 429 and the fuzzer would test nothing else. (The limit has tests of its own.)
    url, proc = stack.start_web(API_RATE_LIMIT="100000/minute")
    _, key = make_team(settings)
    run_ids = []
    for text in ("a run the fuzzer reads", "another one"):
        made = httpx.post(
            f"{url}/api/runs", headers=auth(key), timeout=10, json={"workflow": "summarize", "input": {"text": text}}
        )
        assert made.status_code == 202, made.text
        run_ids.append(made.json()["id"])
        assert httpx.post(f"{url}/api/runs/{run_ids[-1]}/cancel", headers=auth(key), timeout=10).status_code == 202
    yield LiveApi(url, key, run_ids)
    stack.stop(proc)


def _toml(value: object) -> str:
    # TOML strings, integers, floats and arrays of them are written as in JSON (non-ASCII kept as is).
    return json.dumps(value, ensure_ascii=False)


def _config(live_api: LiveApi) -> str:
    """schemathesis.toml for the run."""
    return (
        "\n".join(
            [
                f"headers = {{ Authorization = {_toml(auth(live_api.key)['Authorization'])} }}",
                "cache = { enabled = false }",  # nothing kept between runs, nor written into the work tree
                "[generation]",
                "deterministic = true",  # the same requests on every run: a failure in CI reproduces locally
                'database = "none"',
                "[generation.dictionaries]",
                'string = { dictionary = "awkward-strings", probability = 0.25 }',
                'integer = { dictionary = "awkward-integers", probability = 0.1 }',
                'number = { dictionary = "awkward-numbers", probability = 0.1 }',
                "[dictionaries.awkward-strings]",
                f"values = {_toml(AWKWARD_STRINGS)}",
                "[dictionaries.awkward-integers]",
                f"values = {_toml(AWKWARD_INTEGERS)}",
                "[dictionaries.awkward-numbers]",
                f"values = {_toml(AWKWARD_NUMBERS)}",
                "[dictionaries.runs]",
                f"values = {_toml(live_api.run_ids)}",
                "[parameters]",
                '"path.run_id" = { dictionary = "runs", probability = 0.5 }',
                # Inside a run's input the type-wide binding above is not applied: bind the workflows' text fields.
                *(
                    f'"body.input.{name}" = {{ dictionary = "awkward-strings", probability = 0.25 }}'
                    for name in _text_inputs()
                ),
            ]
        )
        + "\n"
    )


def _text_inputs() -> list[str]:
    """The string fields of the workflows' inputs (`text`, `question`, ...)."""
    from tests.helpers import example

    return sorted(
        {
            name
            for wf in ("research", "summarize")
            for name, spec in example(wf).input_schema["properties"].items()
            if spec.get("type") == "string"
        }
    )


def test_every_operation_answers_as_the_document_says(live_api, tmp_path):
    """No 5xx, and every status, media type and body is one the document gives."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(live_api))
    report = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{live_api.url}/api/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--no-shrink",
        "--request-timeout",
        str(REQUEST_TIMEOUT_S),
        "--workers",
        "1",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=tmp_path,
        env=child_environment(NO_PROXY="127.0.0.1,localhost"),
    )
    output = done.stdout + done.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "schemathesis.txt").write_text(output)
    assert done.returncode == 0, output
    operations = json.loads(report.read_text())["operations"]
    assert operations["tested"] == operations["total"] >= 10, operations  # every operation of the document
