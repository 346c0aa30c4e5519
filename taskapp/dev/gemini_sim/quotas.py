"""The simulator's quota enforcement and injected errors, answered as Gemini answers them.

Per model: requests and input tokens in a sliding 60 s window (stricter than Gemini's
reported reset on the minute, so what passes here passes there) and requests per
quota day (the same day as the gate's, `taskapp.domain.quota.quota_day`). Refusals are 429
bodies with QuotaFailure (the quotaId) and RetryInfo.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

from taskapp.domain.quota import quota_day

PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
TOKENS_PER_MINUTE = "GenerateContentInputTokensPerModelPerMinute-FreeTier"


def quota_error(model: str, quota_id: str, limit: int, retry_in_s: float) -> dict[str, Any]:
    """A 429 body as Gemini sends it: QuotaFailure with the quotaId, and RetryInfo."""
    delay = max(1, math.ceil(retry_in_s))
    return {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": f"You exceeded your current quota, please check your plan and billing details. "
            f"Please retry in {retry_in_s:.1f}s.",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": quota_id,
                            "quotaDimensions": {"location": "global", "model": model},
                            "quotaValue": str(limit),
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay}s"},
            ],
        }
    }


class SimQuotas:
    """Quotas per model ({"rpm", "tpm", "rpd"}) and errors to inject; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.quotas: dict[str, dict[str, int]] = {}
        self.day_seconds: int | None = None  # a short "day" for tests; default midnight Pacific
        self.minute_s = 60.0  # a short "minute" (the RPM/TPM window) for tests
        # Errors for the next requests: [{"status": 429|500|503, "count": n, "retry_delay_s": s,
        # "per_day": bool, "model": optional}], consumed in order.
        self.inject: list[dict[str, Any]] = []
        self._accepted: dict[str, deque[tuple[float, int]]] = {}
        self._per_day: dict[tuple[str, str], int] = {}

    def configure(self, body: dict[str, Any]) -> None:
        if "quotas" in body:
            quotas = body["quotas"]
            if not isinstance(quotas, dict) or not all(
                isinstance(q, dict) and set(q) <= {"rpm", "tpm", "rpd"} and all(isinstance(v, int) for v in q.values())
                for q in quotas.values()
            ):
                raise ValueError('quotas: {"<model>": {"rpm": int, "tpm": int, "rpd": int}}')
            with self.lock:
                self.quotas = quotas
        if "minute_s" in body:
            self.minute_s = float(body["minute_s"] or 60)
        if "day_seconds" in body:
            self.day_seconds = int(body["day_seconds"]) if body["day_seconds"] else None
        if "inject" in body:
            inject = body["inject"]
            if not isinstance(inject, list) or not all(
                isinstance(i, dict) and i.get("status") in (429, 500, 503) for i in inject
            ):
                raise ValueError('inject: a list of {"status": 429|500|503, "count": n, "retry_delay_s": s}')
            with self.lock:
                self.inject = [dict(i, count=int(i.get("count", 1))) for i in inject]

    def reset(self) -> None:
        with self.lock:
            self.quotas, self.day_seconds, self.minute_s, self.inject = {}, None, 60.0, []
            self._accepted.clear()
            self._per_day.clear()

    def admit(self, model: str, tokens_in: int, now: float) -> dict[str, Any] | None:
        """Count a request against the model's quotas, or return the 429 (or injected error) body."""
        with self.lock:
            injected = self._injected(model)
            if injected is not None:
                return injected
            quota = self.quotas.get(model)
            if not quota:
                return None
            window = self._accepted.setdefault(model, deque())
            minute = self.minute_s
            while window and window[0][0] <= now - minute:
                window.popleft()
            day = quota_day(datetime.fromtimestamp(now, UTC), self.day_seconds)
            if "rpd" in quota and self._per_day.get((model, day.key), 0) >= quota["rpd"]:
                return quota_error(model, PER_DAY, quota["rpd"], day.resets_at_ms / 1000 - now)
            if "rpm" in quota and len(window) >= quota["rpm"]:
                oldest = window[len(window) - quota["rpm"]][0]
                return quota_error(model, PER_MINUTE, quota["rpm"], oldest + minute - now)
            if "tpm" in quota and sum(t for _, t in window) + tokens_in > quota["tpm"]:
                return quota_error(model, TOKENS_PER_MINUTE, quota["tpm"], window[0][0] + minute - now)
            window.append((now, tokens_in))
            self._per_day[(model, day.key)] = self._per_day.get((model, day.key), 0) + 1
            return None

    def _injected(self, model: str) -> dict[str, Any] | None:
        for rule in self.inject:
            if rule["count"] > 0 and rule.get("model") in (None, model):
                rule["count"] -= 1
                if rule["status"] == 429:
                    return quota_error(
                        model, PER_DAY if rule.get("per_day") else PER_MINUTE, 0, float(rule.get("retry_delay_s", 1))
                    )
                return {
                    "error": {
                        "code": rule["status"],
                        "message": "Injected server error.",
                        "status": "UNAVAILABLE" if rule["status"] == 503 else "INTERNAL",
                    }
                }
        return None
