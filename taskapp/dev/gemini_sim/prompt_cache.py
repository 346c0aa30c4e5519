"""The simulator's stand-in for Gemini's implicit prompt cache: a repeated prefix reported as cached.

Gemini caches the start of a request it has seen recently and reports those tokens in
`usageMetadata.cachedContentTokenCount` (billed at the cached-input price). Here, generically
(nothing about particular agents): when a request's system instruction and response schema are
byte-identical to those of a request to the same model in the last `ttl_s` seconds, and the system
instruction is at least `min_tokens` long (Gemini's implicit-cache minimum, 1,024 tokens for
2.5 Flash), its tokens count as cached. Only the system instruction is counted (it is what
`promptTokenCount` counts of the prefix; the schema only has to match).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

DEFAULT_MIN_TOKENS = 1024
DEFAULT_TTL_S = 300.0


class PromptCache:
    """Prefixes seen per model, with when they were last seen; shared by handler threads."""

    def __init__(self, min_tokens: int = DEFAULT_MIN_TOKENS, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.min_tokens = min_tokens
        self.ttl_s = ttl_s
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def configure(self, body: dict[str, Any]) -> None:
        """`/_sim/config` keys: cache_min_tokens (>= 1), cache_ttl_s (>= 0; 0 turns caching off)."""
        if "cache_min_tokens" in body:
            value = int(body["cache_min_tokens"])
            if value < 1:
                raise ValueError("cache_min_tokens: at least 1")
            self.min_tokens = value
        if "cache_ttl_s" in body:
            ttl = float(body["cache_ttl_s"])
            if ttl < 0:
                raise ValueError("cache_ttl_s: at least 0 (0: no caching)")
            self.ttl_s = ttl

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
            self.min_tokens, self.ttl_s = DEFAULT_MIN_TOKENS, DEFAULT_TTL_S

    def cached_tokens(self, model: str, system: str, schema: Any, prefix_tokens: int, now: float | None = None) -> int:
        """How many of this request's tokens were served from the cache (0 or `prefix_tokens`);
        the prefix is remembered (or refreshed) for the requests after it."""
        if not system or self.ttl_s <= 0 or prefix_tokens < self.min_tokens:
            return 0
        now = time.time() if now is None else now
        digest = hashlib.sha256(
            json.dumps([model, system, schema], sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        with self._lock:
            last = self._seen.get(digest)
            self._seen[digest] = now
            if len(self._seen) > 10_000:  # forget the stale ones now and then
                self._seen = {k: t for k, t in self._seen.items() if now - t <= self.ttl_s}
        return prefix_tokens if last is not None and now - last <= self.ttl_s else 0
