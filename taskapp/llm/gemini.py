"""The only module that imports google-genai: one client per process, errors made plain."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from taskapp.domain.pricing import Usage
from taskapp.per_process import per_process
from taskapp.settings import Settings

try:  # google-genai 3.x sends with httpx2 by default; 1.x and 2.x with httpx
    import httpx2

    _TIMEOUTS: tuple[type[BaseException], ...] = (httpx.TimeoutException, httpx2.TimeoutException, TimeoutError)
    _TRANSPORT: tuple[type[BaseException], ...] = (httpx.HTTPError, httpx2.HTTPError, OSError)
    _Limits: type = httpx2.Limits  # the SDK picks its transport from the type of the limits it is given
except ImportError:  # pragma: no cover (older SDKs)
    _TIMEOUTS = (httpx.TimeoutException, TimeoutError)
    _TRANSPORT = (httpx.HTTPError, OSError)
    _Limits = httpx.Limits


@dataclass(frozen=True)
class LlmResponse:
    text: str | None
    usage: Usage
    latency_ms: int
    model_version: str | None = None


class LlmError(Exception):
    """A failed call, classified so callers can decide between retry, wait and fail."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        quota_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind  # rate_limited | daily_quota | server | timeout | client
        self.status = status
        self.retry_after_s = retry_after_s
        self.quota_id = quota_id

    @property
    def retryable(self) -> bool:
        return self.kind in ("rate_limited", "server", "timeout")


def connection_limit(settings: Settings) -> int:
    """Connections one process may hold open to Gemini: one per call it can have in flight.

    httpx's default (100 connections, 20 kept alive) would make an `llm` node's 101st
    concurrent call wait for a connection (its wait counted in its timeout) and close all
    but 20 after each answer, reconnecting for every call.
    """
    return max(settings.llm_worker_concurrency, settings.worker_concurrency)


class GeminiClient:
    """Built once per worker process (building a genai.Client costs ~65 ms); shared by its threads."""

    def __init__(self, settings: Settings) -> None:
        if not settings.gemini_api_key and not settings.gemini_base_url:
            settings.require("gemini_base_url")  # raises with a helpful message
        limit = connection_limit(settings)
        options = types.HttpOptions(
            api_version=settings.gemini_api_version,
            timeout=settings.gemini_timeout_ms,
            base_url=settings.gemini_base_url,
            client_args={"limits": _Limits(max_connections=limit, max_keepalive_connections=limit)},
        )
        self._client = genai.Client(api_key=settings.gemini_api_key or "simulator", http_options=options)

    def generate(
        self,
        *,
        model: str,
        system_instruction: str,
        prompt: str,
        response_schema: dict[str, Any],
        temperature: float,
        max_output_tokens: int,
        service_tier: str | None = None,
    ) -> LlmResponse:
        """One generateContent call. `service_tier` (e.g. "flex") is passed through as the SDK's
        `GenerateContentConfig.service_tier`; no call path sets it yet (issue 21, item 3)."""
        config = types.GenerateContentConfig(
            system_instruction=system_instruction,
            temperature=temperature,
            max_output_tokens=max_output_tokens,
            response_mime_type="application/json",
            response_json_schema=response_schema,
            service_tier=types.ServiceTier(service_tier) if service_tier else None,
        )
        started = time.perf_counter()
        try:
            resp = self._client.models.generate_content(model=model, contents=prompt, config=config)
        except genai_errors.APIError as exc:
            raise classify_api_error(exc) from exc
        except _TIMEOUTS as exc:
            raise LlmError("timeout", f"Gemini call timed out: {exc}") from exc
        except _TRANSPORT as exc:
            raise LlmError("server", f"Gemini unreachable: {exc}") from exc
        latency_ms = int((time.perf_counter() - started) * 1000)
        usage = usage_of(resp.usage_metadata)
        try:
            text = resp.text
        except ValueError:
            text = None
        return LlmResponse(text=text, usage=usage, latency_ms=latency_ms, model_version=resp.model_version)


def usage_of(meta: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    """The billed tokens of a response: the prompt (cached part included, and counted apart so it
    is billed at the cached price), and the answer with its thinking."""
    if meta is None:
        return Usage(0, 0)
    tokens_in = meta.prompt_token_count or 0
    return Usage(
        tokens_in=tokens_in,
        tokens_out=(meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0),
        tokens_cached=min(meta.cached_content_token_count or 0, tokens_in),
    )


def classify_api_error(exc: genai_errors.APIError) -> LlmError:
    """Read Gemini's error body: 429 quota kind and RetryInfo delay, 5xx, other 4xx."""
    code = exc.code or 0
    message = exc.message or str(exc)
    if code == 429:
        retry_after, quota_id = _quota_details(exc.details)
        if quota_id and "PerDay" in quota_id:
            return LlmError("daily_quota", message, status=code, retry_after_s=retry_after, quota_id=quota_id)
        return LlmError("rate_limited", message, status=code, retry_after_s=retry_after, quota_id=quota_id)
    if code >= 500 or code in (408,):
        return LlmError("server", message, status=code)
    return LlmError("client", message, status=code)


def _quota_details(details: object) -> tuple[float | None, str | None]:
    body = details.get("error", details) if isinstance(details, dict) else {}
    retry_after: float | None = None
    quota_id: str | None = None
    for item in body.get("details", []) if isinstance(body, dict) else []:
        kind = str(item.get("@type", ""))
        if kind.endswith("RetryInfo"):
            match = re.match(r"([\d.]+)s", str(item.get("retryDelay", "")))
            if match:
                retry_after = float(match.group(1))
        elif kind.endswith("QuotaFailure"):
            for violation in item.get("violations", []):
                quota_id = violation.get("quotaId") or quota_id
    return retry_after, quota_id


def warm_up(response_schemas: Iterable[dict[str, Any]]) -> None:
    """Build now what the SDK's pydantic types and our schemas otherwise build on a process's
    first calls (a few hundred ms of CPU). A worker node calls it before it forks its pool,
    so every pool process starts warm instead of paying for it on its first batch."""
    with contextlib.suppress(ImportError):  # what the SDK's HTTP transport imports on a client's first build
        import httpcore2  # noqa: F401
    for schema in response_schemas:
        types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema)
    types.Schema.model_validate({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}})
    types.UserContent(parts=[types.Part(text="")])
    types.GenerateContentResponse.model_validate(
        {
            "candidates": [{"content": {"parts": [{"text": "{}"}], "role": "model"}}],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1},
        }
    )


@per_process(key=lambda *_: ())  # one per process: settings do not change in one
def get_client(settings: Settings) -> GeminiClient:
    """This process's client (rebuilt after a fork; building one costs tens of milliseconds)."""
    return GeminiClient(settings)
