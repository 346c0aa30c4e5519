"""The Gemini simulator speaks Gemini's wire format to the real google-genai SDK over HTTP."""

from __future__ import annotations

import httpx
import pytest
from google import genai
from google.genai import types
from pydantic import BaseModel

from taskapp.dev.gemini_sim import server as simulator
from taskapp.domain.prompts import batch_schema, build_prompt, parse_answers, system_instruction
from taskapp.llm.gemini import GeminiClient
from taskapp.settings import load_settings
from tests.helpers import example


@pytest.fixture(scope="module")
def sim():
    server = simulator.start(latency_ms=0)
    yield server
    server.shutdown()


class Verdict(BaseModel):
    answer: str
    confidence: int


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_sdk_gets_schema_valid_json_and_usage(sim, version):
    """Structured output parses into the pydantic schema; usage_metadata has token counts."""
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=sim.url, api_version=version))
    resp = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="Is water wet?",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=Verdict),
    )
    assert isinstance(resp.parsed, Verdict)
    assert resp.usage_metadata.prompt_token_count > 0 and resp.usage_metadata.candidates_token_count > 0
    assert client.models.count_tokens(model="gemini-2.5-flash", contents="four words right here").total_tokens > 0


def test_batched_prompt_gets_one_answer_per_step_id(sim):
    """A batch of five steps is answered with five answers, each about its own task."""
    client = GeminiClient(load_settings({}, gemini_base_url=sim.url))
    agent = example("research").agents["researcher"]
    items = [(f"step-{i}", {"question": "Q", "sub_question": f"topic number {i}"}) for i in range(5)]
    resp = client.generate(
        model=agent.model,
        system_instruction=system_instruction(agent),
        prompt=build_prompt(items),
        response_schema=batch_schema(agent),
        temperature=0,
        max_output_tokens=500,
    )
    answers = parse_answers(resp.text, agent, [sid for sid, _ in items])
    assert all(a.ok for a in answers.values())
    for sid, payload in items:
        assert payload["sub_question"] in answers[sid].output["findings"]


def test_requests_are_logged_and_latency_is_configurable(sim):
    """Every accepted request is in the log; latency can be changed at run time."""
    before = len(sim.state.requests())
    httpx.post(f"{sim.url}/_sim/config", json={"latency_ms": 50})
    client = GeminiClient(load_settings({}, gemini_base_url=sim.url))
    agent = example("summarize").agents["summarizer"]
    resp = client.generate(
        model=agent.model,
        system_instruction="s",
        prompt=build_prompt([("a", {"text": "t"})]),
        response_schema=batch_schema(agent),
        temperature=0,
        max_output_tokens=50,
    )
    httpx.post(f"{sim.url}/_sim/config", json={"latency_ms": 0})
    assert resp.latency_ms >= 50
    log = sim.state.requests()
    assert len(log) == before + 1 and log[-1]["model"] == agent.model and log[-1]["tokens_in"] > 0
    assert httpx.get(f"{sim.url}/_sim/requests?since={log[-1]['seq'] - 1}").json()[0]["seq"] == log[-1]["seq"]


def test_bad_requests_get_gemini_style_errors(sim):
    """Malformed JSON, missing contents, unknown paths and missing keys answer like Gemini does."""
    url = f"{sim.url}/v1beta/models/gemini-2.5-flash:generateContent"
    h = {"x-goog-api-key": "k", "Content-Type": "application/json"}
    assert httpx.post(url, content=b"{oops", headers=h).json()["error"]["status"] == "INVALID_ARGUMENT"
    assert httpx.post(url, json={}, headers=h).status_code == 400
    assert httpx.post(url, json={"contents": [{"parts": [{"text": "x"}]}]}).status_code == 403
    assert httpx.post(f"{sim.url}/v1beta/models/x:explode", json={}, headers=h).status_code == 404
