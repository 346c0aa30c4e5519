"""The environment variables of taskapp's settings: each one's field, and how a JSON one's text is
read. Names and parsing only: `taskapp.settings.load_settings` is the one reader of the environment.
"""

from __future__ import annotations

import json

# Environment variable -> field. Only these are read.
ENV_FIELDS = {
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "CELERY_BROKER_URL": "broker_url",
    "CELERY_RESULT_BACKEND": "result_backend_url",
    "GEMINI_API_KEY": "gemini_api_key",
    "GEMINI_BASE_URL": "gemini_base_url",
    "GEMINI_API_VERSION": "gemini_api_version",
    "GEMINI_TIMEOUT_MS": "gemini_timeout_ms",
    "GEMINI_MODELS": "gemini_models",
    "WORKFLOWS_PATH": "workflows_path",
    "BATCH_MAX_SIZE": "batch_max_size",
    "BATCH_MAX_WAIT_MS": "batch_max_wait_ms",
    "BATCH_POLICIES": "batch_policies",
    "BATCH_TICK_MS": "batch_tick_ms",
    "SWEEP_INTERVAL_S": "sweep_interval_s",
    "BATCH_STRANDED_S": "batch_stranded_s",
    "BATCH_FLUSHER_EMBEDDED": "batch_flusher_embedded",
    "RUN_NUDGE_AFTER_S": "run_nudge_after_s",
    "GEMINI_QUOTAS": "gemini_quotas",
    "GEMINI_PRICES": "gemini_prices",
    "MAX_WAITING_WORK": "max_waiting_work",
    "STEP_MAX_ATTEMPTS": "step_max_attempts",
    "STEP_LEASE_S": "step_lease_s",
    "QUOTA_DAY_SECONDS": "quota_day_seconds",
    "QUOTA_MINUTE_SECONDS": "quota_minute_seconds",
    "RUN_MAX_STEPS": "max_steps",
    "RUN_TOKEN_BUDGET": "run_token_budget",
    "RUN_MAX_HANDOFF_DEPTH": "max_handoff_depth",
    "RUN_TIMEOUT_S": "run_timeout_s",
    "CONTEXT_TOKEN_BUDGET": "context_token_budget",
    "LLM_MAX_RETRIES": "llm_max_retries",
    "SECRET_KEY": "secret_key",
    "SESSION_COOKIE_SECURE": "session_cookie_secure",
    "SESSION_LIFETIME_S": "session_lifetime_s",
    "LOGIN_LINK_TTL_S": "login_link_ttl_s",
    "API_RATE_LIMIT": "api_rate_limit",
    "SIGN_IN_RATE_LIMIT": "sign_in_rate_limit",
    "PROXY_HOPS": "proxy_hops",
    "FLOWER_BASIC_AUTH": "flower_basic_auth",
    "FLOWER_PORT": "flower_port",
    "METRICS_TOKEN": "metrics_token",
    "SSE_KEEPALIVE_S": "sse_keepalive_s",
    "MAX_CONTENT_LENGTH": "max_content_length",
    "PORT": "port",
    "WEB_CONCURRENCY": "web_concurrency",
    "WORKER_CONCURRENCY": "worker_concurrency",
    "LLM_WORKER_POOL": "llm_worker_pool",
    "LLM_WORKER_CONCURRENCY": "llm_worker_concurrency",
    "CELERY_TASK_EVENTS": "task_events",
    "DB_POOL_SIZE": "db_pool_size",
    "WEB_DB_POOL_SIZE": "web_db_pool_size",
    "DB_PRE_PING": "db_pre_ping",
    "LOG_FORMAT": "log_format",
    "LOG_LEVEL": "log_level",
    "TASKAPP_DATA_DIR": "data_dir",
    "GEMINI_SIM_PORT": "sim_port",
    "GEMINI_SIM_LATENCY_MS": "sim_latency_ms",
    "TASKAPP_API_URL": "api_url",
    "TASKAPP_API_KEY": "api_key",
}


def json_objects(value: object, example: str) -> object:
    """A JSON variable's text parsed (pydantic then checks the shape); bad JSON says what was expected."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc}); expected {example}") from None
