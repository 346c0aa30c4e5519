"""The one place that reads the environment.

Every other module receives a `Settings` (or gets the process-wide one from
`get_settings()`); nothing else touches `os.environ`, so configuration is
validated once, on load, with a message that names the variable at fault.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from taskapp.domain.batching import BatchPolicy, policy_for
from taskapp.domain.engine import Limits
from taskapp.domain.pricing import PriceTable
from taskapp.domain.quota import QUOTA_FIELDS, ModelQuota, quota_for
from taskapp.service_urls import normalize_database_url, normalize_redis_url
from taskapp.settings_env import ENV_FIELDS, json_objects


class SettingsError(ValueError):
    """Raised when the environment cannot be turned into valid settings."""


MIN_SECRET_KEY_BYTES = 32
MAX_PREFORK_LLM_CONCURRENCY = 32  # processes: beyond this an `llm` node belongs on a waiting pool
DEFAULT_LIMITS = Limits()


class Settings(BaseModel):
    """Frozen, validated configuration (12-factor: everything from the environment)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str | None = None
    redis_url: str | None = None
    broker_url: str | None = None
    result_backend_url: str | None = None

    gemini_api_key: str | None = None
    gemini_base_url: str | None = None
    gemini_api_version: str = "v1beta"
    gemini_timeout_ms: int = Field(default=60_000, ge=100)
    # The models this deployment serves: one `llm.<model>` queue each, which workers consume. An
    # agent naming another model is refused when its definition is stored.
    gemini_models: list[str] = Field(default_factory=lambda: ["gemini-2.5-flash", "gemini-2.5-flash-lite"])
    # The deployer's shared workflows (and the tools they register): a directory of YAML/JSON
    # definitions (and .py modules of tools), or a Python package that ships them; several,
    # comma-separated. Unset: none.
    workflows_path: str | None = None

    batch_max_size: int = Field(default=8, ge=1, le=256)
    batch_max_wait_ms: int = Field(default=3_000, ge=0)
    # Per agent: {"researcher": {"max_size": 16, "max_wait_ms": 1000}}; others use the two above.
    batch_policies: dict[str, dict[str, int]] = Field(default_factory=dict)
    # How often the flusher looks at the buffers, and how often (fleet-wide) the sweeper runs.
    batch_tick_ms: int = Field(default=25, ge=5, le=1000)
    sweep_interval_s: float = Field(default=5.0, gt=0)
    # A flushed batch whose message has not started after this long is re-offered (message lost).
    batch_stranded_s: int = Field(default=900, ge=1)
    batch_flusher_embedded: bool = True
    # Per model: {"gemini-2.5-flash": {"rpm": 10, "tpm": 250000, "rpd": 250, "concurrency": 8}};
    # "*" applies to models not named. Unset values keep the defaults in taskapp/quota.py.
    gemini_quotas: dict[str, dict[str, int | None]] = Field(default_factory=dict)
    # Per model, USD per 1M tokens and the lanes' discounts: {"gemini-2.5-flash": {"input": 0.3,
    # "cached_input": 0.03, "output": 2.5, "batch_discount": 0.5, "flex_discount": 0.5}}; "*" applies
    # to models not named. Unset fields keep the defaults in taskapp/domain/pricing.py.
    gemini_prices: dict[str, dict[str, float | int | str]] = Field(default_factory=dict)
    # Simulation only: a quota "day" of this many seconds instead of midnight-to-midnight Pacific.
    quota_day_seconds: int | None = Field(default=None, ge=1)
    # Simulation only: a quota "minute" (the RPM/TPM window) of this many seconds instead of 60.
    quota_minute_seconds: int = Field(default=60, ge=1)
    # A run idle this long with nothing pending (or never started) was missed: the sweeper advances it.
    # Longer than a busy orchestration queue's backlog, or the sweeper duplicates what is on its way.
    run_nudge_after_s: float = Field(default=60.0, gt=0)
    # Backpressure: POST /api/runs answers 429 while this many runs and steps wait to start (0: never).
    max_waiting_work: int = Field(default=20_000, ge=0)
    # A step claimed this many times without finishing (its worker keeps dying) fails: a poison
    # message. Each retry of a failed Gemini call is a claim too, so it exceeds LLM_MAX_RETRIES + 1.
    step_max_attempts: int = Field(default=10, ge=2)
    # A claimed step's lease, renewed while its call runs; a dead worker's steps are re-offered after it.
    step_lease_s: float = Field(default=30.0, ge=1)

    # The kill switches' defaults are the engine's (one copy: taskapp.domain.engine.Limits).
    max_steps: int = Field(default=DEFAULT_LIMITS.max_steps, ge=1)
    run_token_budget: int = Field(default=DEFAULT_LIMITS.token_budget, ge=1)
    max_handoff_depth: int = Field(default=DEFAULT_LIMITS.max_handoff_depth, ge=0)
    run_timeout_s: int = Field(default=int(DEFAULT_LIMITS.run_timeout_s), ge=1)
    context_token_budget: int = Field(default=DEFAULT_LIMITS.context_token_budget, ge=100)
    llm_max_retries: int = Field(default=5, ge=0)

    # Signs session cookies. No default: the web process refuses to start without one (see
    # require_secret_key); `taskapp dev` and the test stack make a random one.
    secret_key: str | None = None
    # Session cookies are sent over HTTPS only; `taskapp dev` (plain http on localhost) turns it off.
    session_cookie_secure: bool = True
    session_lifetime_s: int = Field(default=12 * 3600, ge=60)
    login_link_ttl_s: int = Field(default=900, ge=10)
    # Per team (or per client address before sign-in), across every web process (kept in Redis).
    api_rate_limit: str = "600/minute"
    # Per client address, on the sign-in posts (key or link): each guess costs a database read.
    sign_in_rate_limit: str = "20/minute"
    # Proxies in front of the web process that set X-Forwarded-For/-Proto/-Host (Heroku's router: 1).
    proxy_hops: int = Field(default=0, ge=0, le=5)
    flower_basic_auth: str | None = None
    flower_port: int = Field(default=5555, ge=1, le=65535)
    metrics_token: str | None = None
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # The largest request body the web accepts (413 beyond): a run request is a few kB.
    max_content_length: int = Field(default=1_048_576, ge=1024)
    port: int = Field(default=5000, ge=1, le=65535)
    web_concurrency: int = Field(default=1, ge=1)
    worker_concurrency: int = Field(default=4, ge=1)
    # The `llm` process type (taskapp.worker_roles): the llm.* queues on a pool made for waiting,
    # so one process keeps many Gemini calls in flight (docs/operations.md, "Scaling").
    llm_worker_pool: Literal["threads", "gevent", "prefork"] = "threads"
    llm_worker_concurrency: int = Field(default=200, ge=1, le=2000)
    task_events: bool = True
    db_pool_size: int = Field(default=5, ge=1)
    web_db_pool_size: int = Field(default=20, ge=1)
    db_pre_ping: bool = True
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    data_dir: Path = Path(".taskapp")
    sim_port: int = Field(default=8089, ge=0, le=65535)
    sim_latency_ms: int = Field(default=150, ge=0)

    api_url: str = "http://127.0.0.1:5000"
    api_key: str | None = None

    @field_validator("database_url")
    @classmethod
    def _sqlalchemy_url(cls, value: str | None) -> str | None:
        return normalize_database_url(value) if value else None

    @field_validator("gemini_models", mode="before")
    @classmethod
    def _models(cls, value: object) -> object:
        if isinstance(value, str):  # GEMINI_MODELS=gemini-2.5-flash,gemini-2.5-pro
            value = [m.strip() for m in value.split(",") if m.strip()]
        if isinstance(value, list) and not value:
            raise ValueError("name at least one model (comma-separated)")
        return value

    @field_validator("batch_policies", mode="before")
    @classmethod
    def _policies(cls, value: object) -> object:
        value = json_objects(value, '{"agent": {"max_size": 8, "max_wait_ms": 500}}')
        if isinstance(value, dict):
            for agent, policy in value.items():
                if not isinstance(policy, dict) or set(policy) - {"max_size", "max_wait_ms"}:
                    raise ValueError(f"policy for {agent!r} must be an object with max_size and/or max_wait_ms")
                if int(policy.get("max_size", 1)) < 1 or int(policy.get("max_wait_ms", 0)) < 0:
                    raise ValueError(f"policy for {agent!r}: max_size >= 1 and max_wait_ms >= 0")
        return value

    @field_validator("gemini_quotas", mode="before")
    @classmethod
    def _quotas(cls, value: object) -> object:
        value = json_objects(value, '{"model": {"rpm": 10, "tpm": 250000}}')
        if isinstance(value, dict):
            for model, limits in value.items():
                if not isinstance(limits, dict) or set(limits) - set(QUOTA_FIELDS):
                    raise ValueError(f"quota for {model!r}: an object with {', '.join(QUOTA_FIELDS)}")
                for name, limit in limits.items():
                    if limit is not None and (not isinstance(limit, int) or limit < 1):
                        raise ValueError(f"quota for {model!r}: {name} must be a positive integer or null")
        return value

    @field_validator("gemini_prices", mode="before")
    @classmethod
    def _prices(cls, value: object) -> object:
        value = json_objects(value, '{"gemini-2.5-flash": {"input": 0.3, "cached_input": 0.03, "output": 2.5}}')
        if isinstance(value, dict):
            for model, price in value.items():
                if not isinstance(price, dict):
                    raise ValueError(f"price for {model!r}: an object of field -> number")
                try:
                    PriceTable({model: price})
                except ValueError as exc:
                    raise ValueError(f"price for {model!r}: {exc}") from None
        return value

    @field_validator("api_rate_limit", "sign_in_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit such as '600/minute' or '20/second;600/minute'") from None
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) < MIN_SECRET_KEY_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_KEY_BYTES} bytes: it grants the whole fleet's metrics")
        return value

    @field_validator("redis_url", "broker_url", "result_backend_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return normalize_redis_url(value) if value else None

    @model_validator(mode="after")
    def _llm_pool_fits(self) -> Settings:
        if self.llm_worker_pool == "prefork" and self.llm_worker_concurrency > MAX_PREFORK_LLM_CONCURRENCY:
            raise ValueError(
                f"LLM_WORKER_CONCURRENCY ({self.llm_worker_concurrency}) with LLM_WORKER_POOL=prefork is a process "
                f"per call; at most {MAX_PREFORK_LLM_CONCURRENCY} (use LLM_WORKER_POOL=threads for many calls)"
            )
        return self

    @model_validator(mode="after")
    def _attempts_cover_retries(self) -> Settings:
        if self.step_max_attempts <= self.llm_max_retries + 1:
            raise ValueError(
                f"STEP_MAX_ATTEMPTS ({self.step_max_attempts}) must exceed LLM_MAX_RETRIES + 1 "
                f"({self.llm_max_retries + 1}): each retried call is a claim of the step"
            )
        return self

    def quota(self, model: str) -> ModelQuota:
        """The model's limits: its GEMINI_QUOTAS entry over the built-in defaults."""
        return quota_for(model, self.gemini_quotas)

    def prices(self) -> PriceTable:
        """Prices per model: GEMINI_PRICES over the built-in defaults (cheap to build: a few entries)."""
        return PriceTable(self.gemini_prices)

    def limits(self) -> Limits:
        """The server's kill switches, which a run's own limits may only lower."""
        return Limits(
            max_steps=self.max_steps,
            token_budget=self.run_token_budget,
            max_handoff_depth=self.max_handoff_depth,
            run_timeout_s=self.run_timeout_s,
            context_token_budget=self.context_token_budget,
        )

    def batch_policy(self, agent: str, own: Mapping[str, int | None] | None = None) -> BatchPolicy:
        """The agent's batch size and window: its BATCH_POLICIES entry (the deployer's word) over
        the agent's own `batch` in its definition, over the defaults."""
        mine = {k: v for k, v in (own or {}).items() if v is not None}
        default = BatchPolicy(
            int(mine.get("max_size", self.batch_max_size)), int(mine.get("max_wait_ms", self.batch_max_wait_ms))
        )
        return policy_for(agent, default, self.batch_policies)

    @property
    def effective_broker_url(self) -> str:
        """The broker: CELERY_BROKER_URL, or Redis when it is unset (docs/design.md)."""
        return self.broker_url or self.require("redis_url")

    @property
    def effective_result_backend(self) -> str:
        return self.result_backend_url or self.require("redis_url")

    def require_secret_key(self) -> str:
        """The key that signs session cookies; the web process cannot run without a real one.

        Raises:
            SettingsError: SECRET_KEY is unset or shorter than MIN_SECRET_KEY_BYTES.
        """
        key = self.secret_key or ""
        if len(key.encode()) < MIN_SECRET_KEY_BYTES:
            state = "is not set" if not key else f"has {len(key.encode())} bytes"
            raise SettingsError(
                f"SECRET_KEY {state}: the web process needs a random secret of at least "
                f"{MIN_SECRET_KEY_BYTES} bytes to sign sessions (for example the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`); "
                "`taskapp dev` (make run) makes one for you."
            )
        return key

    def require(self, name: str) -> str:
        """Return a setting that this process cannot run without, or explain."""
        value = getattr(self, name)
        if not value:
            env = name.upper()
            raise SettingsError(
                f"{env} is not set. Set it in the environment, or use `taskapp dev` "
                f"(make run), which starts embedded services and sets it for you."
            )
        return value


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from an environment mapping (default: the process environment)."""
    source = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for env, field in ENV_FIELDS.items():
        raw = source.get(env)
        if raw is not None and raw.strip() != "":
            values[field] = raw.strip()
    for lowered in ("log_format", "llm_worker_pool"):
        if lowered in values:
            values[lowered] = str(values[lowered]).lower()
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        field_to_env = {f: e for e, f in ENV_FIELDS.items()}
        problems = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            if not err["loc"]:  # a rule across several variables names them itself
                problems.append(message)
                continue
            field = str(err["loc"][0])
            problems.append(f"{field_to_env.get(field, field)}: {message}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def child_environment(**extra: str | None) -> dict[str, str]:
    """An environment for a child process: ours, with `extra` set (None removes).

    This interpreter's bin directory leads PATH, so `celery`, `gunicorn` and `taskapp`
    resolve to the same virtualenv even when it was never activated (make run).
    """
    env = dict(os.environ)
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.setdefault("NO_PROXY", "127.0.0.1,localhost")
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env
