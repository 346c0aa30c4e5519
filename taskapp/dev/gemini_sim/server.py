"""A local HTTP server that speaks the Gemini REST API (its wire format as the google-genai SDK sends it).

For offline use, tests and benchmarks: `/v1` and `/v1beta` generateContent and
countTokens, answers valid against the requested schema, plausible token counts,
configurable latency, and a log of every request it accepted (with how many batched
items it carried) so tests can check what reached "Gemini" from the server's side.
`GET /_sim/inflight` says how many generateContent calls it is answering now, and the
most it answered at once since the last reset (`POST /_sim/inflight/reset` zeroes that
peak alone): the calls a worker keeps in flight, counted where they arrive. One thread
per connection, so a slow latency holds hundreds of calls at once.
`POST /_sim/config {"answer_faults": [...]}` makes it drop or corrupt the answers of
chosen batched items, to test that one bad answer never spoils its batch.
A repeated system instruction (and schema) is reported as cached input
(`usageMetadata.cachedContentTokenCount`, see prompt_cache.py; `cache_min_tokens` and
`cache_ttl_s` on `/_sim/config`). `serviceTier` is accepted (and logged), never acted on.

Each response goes out in one write with TCP_NODELAY: a handler that writes
headers and body separately stalls ~40 ms per call (Nagle + delayed ACK).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from taskapp.dev.gemini_sim.answers import FakeContext, fake_value
from taskapp.dev.gemini_sim.state import SimulatorState
from taskapp.domain.tokens import estimate_tokens

_ROUTE = re.compile(r"^/(v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|countTokens)$")


def _tokens(text: str) -> int:
    return estimate_tokens(text) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, dict):
        return "".join(str(p.get("text", "")) for p in content.get("parts", []) if isinstance(p, dict))
    if isinstance(content, list):
        return "\n".join(_text_of(c) for c in content)
    return ""


def request_tokens(body: dict[str, Any]) -> int:
    """Input tokens of a generateContent body, counted as generate() counts them."""
    prompt = _text_of(body.get("contents", []))
    system = _text_of(body.get("systemInstruction") or body.get("system_instruction") or {})
    return _tokens(system) + _tokens(prompt)


def service_tier(body: dict[str, Any]) -> str | None:
    """The request's service tier (the SDK sends `serviceTier` at the top level), if any: accepted, not acted on."""
    config = body.get("generationConfig") or body.get("generation_config") or {}
    for source in (body, config):
        tier = source.get("serviceTier") or source.get("service_tier")
        if tier:
            return str(tier)
    return None


def generate(
    model: str, body: dict[str, Any], state: SimulatorState | None = None
) -> tuple[dict[str, Any], int, int, int]:
    """The generateContent answer for a request body: with input and output tokens, and items answered."""
    prompt = _text_of(body.get("contents", []))
    system = _text_of(body.get("systemInstruction") or body.get("system_instruction") or {})
    config = body.get("generationConfig") or body.get("generation_config") or {}
    schema = (
        config.get("responseJsonSchema")
        or config.get("response_json_schema")
        or config.get("responseSchema")
        or config.get("response_schema")
    )
    ctx = FakeContext.from_prompt(prompt)
    if schema:
        value = fake_value(schema, ctx)
        if state is not None:
            state.apply_faults(value, ctx.tasks)
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = f"Simulated answer to: {' '.join(prompt.split())[:200]}"
    tokens_in = _tokens(system) + _tokens(prompt)
    tokens_out = _tokens(text)
    cached = state.prompt_cache.cached_tokens(model, system, schema, _tokens(system)) if state is not None else 0
    usage = {
        "promptTokenCount": tokens_in,
        "candidatesTokenCount": tokens_out,
        "thoughtsTokenCount": 0,
        "totalTokenCount": tokens_in + tokens_out,
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
    answer = {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": uuid.uuid4().hex[:16],
    }
    return answer, tokens_in, tokens_out, len(ctx.tasks)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: SimulatorServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any] | list[Any]) -> None:
        payload = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
            f"Content-Type: application/json; charset=UTF-8\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        self.wfile.write(head + payload)
        self.wfile.flush()

    def _error(self, status: int, message: str, state: str) -> None:
        self._send(status, {"error": {"code": status, "message": message, "status": state}})

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def do_GET(self) -> None:
        state = self.server.state
        if self.path.startswith("/_sim/requests"):
            match = re.search(r"since=(\d+)", self.path)
            self._send(200, state.requests(int(match.group(1)) if match else 0))
        elif self.path == "/_sim/inflight":
            self._send(200, state.inflight())
        elif self.path == "/_sim/health":
            self._send(200, {"ok": True, "latency_ms": state.latency_ms})
        else:
            self._error(404, f"no such path {self.path}", "NOT_FOUND")

    def do_POST(self) -> None:
        state = self.server.state
        body = self._body()
        if body is None:
            self._error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
            return
        if self.path == "/_sim/reset":
            state.reset()
            self._send(200, {"ok": True})
            return
        if self.path == "/_sim/inflight/reset":
            state.reset_peak()
            self._send(200, state.inflight())
            return
        if self.path == "/_sim/config":
            try:
                state.configure(body)
            except ValueError as exc:
                self._error(400, str(exc), "INVALID_ARGUMENT")
                return
            self._send(200, {"ok": True, "latency_ms": state.latency_ms, "answer_faults": state.answer_faults})
            return
        match = _ROUTE.match(self.path.split("?", 1)[0])
        if not match:
            self._error(404, f"no such method {self.path}", "NOT_FOUND")
            return
        if not (self.headers.get("x-goog-api-key") or "key=" in self.path):
            self._error(403, "Method doesn't allow unregistered callers.", "PERMISSION_DENIED")
            return
        _, model, method = match.groups()
        if method == "countTokens":
            total = _tokens(_text_of(body.get("contents", [])))
            self._send(200, {"totalTokens": total})
            return
        if not body.get("contents"):
            self._error(400, "* GenerateContentRequest.contents: contents is not specified", "INVALID_ARGUMENT")
            return
        received = time.time()
        refusal = state.quotas.admit(model, request_tokens(body), received)
        if refusal is not None:
            error = refusal["error"]
            quota_id = next((v.get("quotaId") for d in error.get("details", []) for v in d.get("violations", [])), None)
            state.record(
                {
                    "ts": received,
                    "model": model,
                    "status": error["code"],
                    "quota_id": quota_id,
                    "items": 0,
                    "tokens_in": 0,
                    "tokens_out": 0,
                }
            )
            self._send(error["code"], refusal)
            return
        state.call_started()
        try:
            if state.latency_ms:
                time.sleep(state.latency_ms / 1000)
            answer, tokens_in, tokens_out, items = generate(model, body, state)
        finally:
            state.call_ended()
        state.record(
            {
                "ts": received,
                "model": model,
                "status": 200,
                "items": items,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "tokens_cached": answer["usageMetadata"].get("cachedContentTokenCount", 0),
                "service_tier": service_tier(body),
            }
        )
        self._send(200, answer)


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: a fleet's worth of calls connecting at once
    allow_reuse_address = True

    def __init__(self, host: str, port: int, state: SimulatorState) -> None:
        super().__init__((host, port), Handler)
        self.state = state

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}"


def start(host: str = "127.0.0.1", port: int = 0, latency_ms: int = 0) -> SimulatorServer:
    """Start a simulator in a background thread (the caller shuts it down)."""
    server = SimulatorServer(host, port, SimulatorState(latency_ms))
    threading.Thread(target=server.serve_forever, name="gemini-sim", daemon=True).start()
    return server


def serve(host: str, port: int, latency_ms: int) -> None:
    """Run in the foreground until interrupted (`taskapp gemini-sim`)."""
    server = SimulatorServer(host, port, SimulatorState(latency_ms))
    print(f"Gemini simulator on {server.url} (latency {latency_ms} ms)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
