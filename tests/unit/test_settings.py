"""Settings are read once from the environment and validated with messages that name the variable."""

from __future__ import annotations

import pytest

from taskapp.settings import SettingsError, load_settings


def test_heroku_postgres_url_is_rewritten_for_psycopg():
    """Heroku's postgres:// becomes a SQLAlchemy psycopg 3 URL."""
    s = load_settings({"DATABASE_URL": "postgres://u:p@db.example:5432/app"})
    assert s.database_url == "postgresql+psycopg://u:p@db.example:5432/app"
    assert load_settings({"DATABASE_URL": "postgresql://x@h/d"}).database_url == "postgresql+psycopg://x@h/d"


def test_broker_and_result_backend_default_to_redis_url():
    """CELERY_BROKER_URL defaults to REDIS_URL; an amqp broker may be named instead."""
    s = load_settings({"REDIS_URL": "redis://127.0.0.1:6379/2"})
    assert s.effective_broker_url == "redis://127.0.0.1:6379/2" == s.effective_result_backend
    s = load_settings({"REDIS_URL": "redis://r/0", "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"})
    assert s.effective_broker_url.startswith("amqp://")


def test_rediss_gets_a_certificate_option():
    """Celery refuses rediss:// without ssl_cert_reqs; an explicit choice is kept."""
    assert "ssl_cert_reqs=required" in load_settings({"REDIS_URL": "rediss://h:6380/0"}).redis_url
    assert "ssl_cert_reqs=none" in load_settings({"REDIS_URL": "rediss://h:6380/0?ssl_cert_reqs=none"}).redis_url


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"DATABASE_URL": "mysql://h/d"}, "DATABASE_URL"),
        ({"BATCH_MAX_SIZE": "zero"}, "BATCH_MAX_SIZE"),
        ({"BATCH_MAX_SIZE": "0"}, "BATCH_MAX_SIZE"),
        ({"PORT": "99999"}, "PORT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"REDIS_URL": "http://h"}, "REDIS_URL"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(env, needle):
    """A bad value stops start-up with the variable's name in the message."""
    with pytest.raises(SettingsError, match=needle):
        load_settings(env)


def test_missing_required_url_explains_what_to_do():
    """A worker with no DATABASE_URL says so, and how to get one."""
    s = load_settings({})
    with pytest.raises(SettingsError, match="DATABASE_URL is not set.*taskapp dev"):
        s.require("database_url")


def test_settings_are_frozen_and_blank_values_mean_unset():
    """Nobody can change settings after load; an empty variable is treated as absent."""
    s = load_settings({"PORT": "", "LOG_FORMAT": "JSON"})
    assert s.port == 5000 and s.log_format == "json"
    with pytest.raises(Exception):  # noqa: B017 (pydantic's frozen-instance error)
        s.port = 1  # type: ignore[misc]


def test_batch_policies_per_agent_fall_back_to_the_defaults():
    s = load_settings(
        {
            "BATCH_MAX_SIZE": "4",
            "BATCH_MAX_WAIT_MS": "250",
            "BATCH_POLICIES": '{"researcher": {"max_size": 16}, "writer": {"max_wait_ms": 0}}',
        }
    )
    assert (s.batch_policy("researcher").max_size, s.batch_policy("researcher").max_wait_ms) == (16, 250)
    assert (s.batch_policy("writer").max_size, s.batch_policy("writer").max_wait_ms) == (4, 0)
    assert (s.batch_policy("summarizer").max_size, s.batch_policy("summarizer").max_wait_ms) == (4, 250)


@pytest.mark.parametrize(
    "raw, needle",
    [
        ("{not json", "BATCH_POLICIES: .*not JSON"),
        ('{"researcher": {"size": 3}}', "BATCH_POLICIES: .*researcher"),
        ('{"researcher": {"max_size": 0}}', "BATCH_POLICIES: .*max_size >= 1"),
    ],
)
def test_bad_batch_policies_are_refused(raw, needle):
    with pytest.raises(SettingsError, match=needle):
        load_settings({"BATCH_POLICIES": raw})


def test_gemini_quotas_override_the_defaults_per_model():
    s = load_settings({"GEMINI_QUOTAS": '{"gemini-2.5-flash": {"rpm": 10, "rpd": null}, "*": {"concurrency": 4}}'})
    flash = s.quota("gemini-2.5-flash")
    assert (flash.rpm, flash.tpm, flash.rpd) == (10, 1_000_000, None)
    assert s.quota("some-new-model").concurrency == 4
    with pytest.raises(SettingsError, match="GEMINI_QUOTAS: .*rpm must be a positive integer"):
        load_settings({"GEMINI_QUOTAS": '{"gemini-2.5-flash": {"rpm": 0}}'})
    with pytest.raises(SettingsError, match="GEMINI_QUOTAS: .*an object with rpm"):
        load_settings({"GEMINI_QUOTAS": '{"gemini-2.5-flash": {"requests": 5}}'})


def test_a_short_metrics_token_is_refused_naming_it():
    """METRICS_TOKEN grants the fleet's numbers: at least 32 bytes, like SECRET_KEY."""
    import pytest

    from taskapp.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="METRICS_TOKEN"):
        load_settings({"METRICS_TOKEN": "short"})
    assert load_settings({"METRICS_TOKEN": "m" * 32}).metrics_token == "m" * 32


def test_the_body_limit_is_a_setting():
    from taskapp.settings import load_settings

    assert load_settings({}).max_content_length == 1_048_576
    assert load_settings({"MAX_CONTENT_LENGTH": "65536"}).max_content_length == 65536
