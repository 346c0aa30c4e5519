"""Worker roles: each role's queues, pool and concurrency, as the Procfile starts them."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskapp.keys import ORCHESTRATION_QUEUE, TOOLS_QUEUE, llm_queue
from taskapp.llm.gemini import connection_limit
from taskapp.settings import SettingsError, load_settings
from taskapp.worker_roles import role_options, role_queues, worker_argv

ROOT = Path(__file__).resolve().parents[2]


def test_the_llm_role_takes_every_model_queue_on_the_waiting_pool():
    settings = load_settings({"LLM_WORKER_POOL": "Threads", "LLM_WORKER_CONCURRENCY": "150"})
    options = role_options("llm", settings)
    assert options[options.index("-Q") + 1].split(",") == [llm_queue(m) for m in settings.gemini_models]
    assert options[options.index("-P") + 1] == "threads" and options[options.index("-c") + 1] == "150"


def test_orchestration_stays_on_prefork_and_all_takes_every_queue():
    settings = load_settings({})
    assert role_options("orchestration", settings) == ["-Q", f"{ORCHESTRATION_QUEUE},{TOOLS_QUEUE}"]
    assert role_queues("all", settings) is None and role_options("all", settings) == []


def test_a_node_is_named_after_its_role_unless_named_by_hand():
    settings = load_settings({})
    argv = worker_argv("llm", settings, ["--loglevel", "INFO"])
    assert argv[1:6] == ["-m", "celery", "-A", "taskapp.celery_app", "worker"]
    assert argv[argv.index("-n") + 1] == "llm@%h" and argv[-2:] == ["--loglevel", "INFO"]
    assert worker_argv("llm", settings, ["-n", "mine@%h"]).count("-n") == 1


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LLM_WORKER_POOL": "eventlet"}, "LLM_WORKER_POOL"),
        ({"LLM_WORKER_CONCURRENCY": "0"}, "LLM_WORKER_CONCURRENCY"),
        ({"LLM_WORKER_POOL": "prefork", "LLM_WORKER_CONCURRENCY": "200"}, "LLM_WORKER_CONCURRENCY"),
    ],
)
def test_bad_pool_settings_are_refused_naming_the_variable(env, needle):
    with pytest.raises(SettingsError, match=needle):
        load_settings(env)


def test_the_gemini_client_keeps_a_connection_per_call_in_flight():
    assert connection_limit(load_settings({})) == 200
    assert connection_limit(load_settings({"LLM_WORKER_CONCURRENCY": "20", "WORKER_CONCURRENCY": "32"})) == 32


@pytest.mark.parametrize("procfile", ["Procfile", "taskapp/dev/Procfile.dev"])
def test_the_procfiles_start_both_roles(procfile):
    lines = dict(line.split(": ", 1) for line in (ROOT / procfile).read_text().splitlines() if ": " in line[:20])
    assert lines["worker"].startswith("taskapp worker orchestration")
    assert lines["llm"].startswith("taskapp worker llm")
