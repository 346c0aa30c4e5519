"""How Gemini failures are classified: retryable or not, and after how long (no server needed)."""

from __future__ import annotations

import pytest
from google.genai import errors

from taskapp.domain.prompts import batch_schema
from taskapp.llm.gemini import GeminiClient, LlmError, classify_api_error
from taskapp.settings import load_settings
from tests.helpers import example


def test_sdk_errors_are_classified():
    """A per-minute 429 is retryable with Gemini's delay; a per-day 429 is not; 5xx is retryable."""

    def api_error(code, quota_id=None, delay=None):
        details = []
        if quota_id:
            details.append(
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota_id}]}
            )
        if delay:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
        body = {"error": {"code": code, "message": "m", "status": "X", "details": details}}
        return errors.APIError(code, body)

    minute = classify_api_error(api_error(429, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "15s"))
    assert minute.kind == "rate_limited" and minute.retry_after_s == 15 and minute.retryable
    day = classify_api_error(api_error(429, "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "3s"))
    assert day.kind == "daily_quota" and not day.retryable
    assert classify_api_error(api_error(503)).retryable
    assert not classify_api_error(api_error(400)).retryable


def test_unreachable_gemini_is_a_retryable_error():
    """Nothing listening: a classified, retryable LlmError (not a crash)."""
    client = GeminiClient(load_settings({}, gemini_base_url="http://127.0.0.1:9", gemini_timeout_ms=2000))
    agent = example("summarize").agents["summarizer"]
    with pytest.raises(LlmError) as info:
        client.generate(
            model=agent.model,
            system_instruction="s",
            prompt="p",
            response_schema=batch_schema(agent),
            temperature=0,
            max_output_tokens=10,
        )
    assert info.value.retryable
