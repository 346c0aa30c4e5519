"""A batch's Gemini calls through the quota gate: the batch call, then per-step repairs.

Quota waits and Gemini's own 429s become QuotaWait (retry later, not a failure); a
repair the gate cannot serve now defers its step to the task's retry.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from taskapp.domain.agents import Agent
from taskapp.domain.pricing import DEFAULT_TABLE, PriceTable, cost_usd
from taskapp.domain.prompts import (
    Answer,
    batch_schema,
    build_prompt,
    parse_answers,
    system_instruction,
)
from taskapp.domain.tokens import estimate_tokens
from taskapp.hotstate.quota_gate import Grant, QuotaGate
from taskapp.llm.gemini import GeminiClient, LlmError
from taskapp.store.models import LlmCall, Step

MAX_REPAIRS = 2


class QuotaWait(Exception):
    """The gate (or Gemini itself) says not now: retry after `delay_s`; not a failure."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(f"quota: wait {delay_s:.1f}s ({reason})")
        self.delay_s = delay_s
        self.reason = reason


def after_quota_error(gate: QuotaGate | None, model: str, exc: LlmError) -> float | None:
    """Gemini said 429 although the gate granted (another client shares the project):
    pause the whole fleet on this model. Returns the wait, or None for other errors."""
    if exc.kind == "daily_quota":
        if gate is None:
            return 3600.0
        return max(1.0, (gate.pause(model, until_day_reset=True) - time.time() * 1000) / 1000)
    if exc.kind == "rate_limited":
        delay = exc.retry_after_s or 10.0
        if gate is not None:
            gate.pause(model, seconds=delay)
        return delay
    return None


Carried = list[tuple[LlmCall, list[str]]]  # each call with the step ids it carried


@dataclass
class Deferred:
    """Steps whose repair had to wait for quota."""

    step_ids: set[str] = field(default_factory=set)
    delay_s: float = 0.0
    reason: str = ""


class BatchCaller:
    """Makes a batch's calls through the gate: the batch call, then per-step repairs."""

    def __init__(
        self,
        client: GeminiClient,
        gate: QuotaGate | None,
        agent: Agent,
        batch_id: uuid.UUID,
        prices: PriceTable = DEFAULT_TABLE,
    ) -> None:
        self.client, self.gate, self.agent, self.batch_id = client, gate, agent, batch_id
        self.prices = prices

    def call_with_repairs(self, steps: list[Step], grant: Grant | None) -> tuple[dict[str, Answer], Carried, Deferred]:
        """One call for the batch; each step it answered badly gets up to two repair calls of its own."""
        by_id = {str(s.id): s for s in steps}
        answers, call = self.call(steps, grant)
        calls = [call]
        deferred = Deferred()
        for sid, answer in list(answers.items()):
            repairs = 0
            while not answer.ok and repairs < MAX_REPAIRS:
                repairs += 1
                try:
                    fixed, repair_call = self.call([by_id[sid]], None, repair=answer.error)
                except QuotaWait as wait:
                    deferred.step_ids.add(sid)
                    deferred.delay_s, deferred.reason = max(deferred.delay_s, wait.delay_s), wait.reason
                    break
                except LlmError as exc:
                    if after_quota_error(self.gate, by_id[sid].model, exc) is not None:
                        deferred.step_ids.add(sid)
                        deferred.delay_s, deferred.reason = max(deferred.delay_s, exc.retry_after_s or 10.0), exc.kind
                        break
                    answer = Answer(error=f"{answer.error}; repair call failed ({exc.kind}): {exc}", raw=answer.raw)
                    continue
                calls.append(repair_call)
                answer = fixed[sid]
            answers[sid] = answer
        return answers, calls, deferred

    def call(
        self, steps: list[Step], grant: Grant | None, repair: str | None = None
    ) -> tuple[dict[str, Answer], tuple[LlmCall, list[str]]]:
        agent, model = self.agent, steps[0].model
        items = [(str(s.id), s.input) for s in steps]
        system, prompt = system_instruction(agent), build_prompt(items, repair=repair)
        if self.gate is not None and grant is None:
            grant = self.gate.acquire(model, f"{self.batch_id}:{items[0][0]}", estimate_tokens(system + prompt))
            if not grant.granted:
                raise QuotaWait(grant.wait_ms / 1000, grant.reason)
        try:
            response = self.client.generate(
                model=model,
                system_instruction=system,
                prompt=prompt,
                response_schema=batch_schema(agent),
                temperature=agent.temperature,
                max_output_tokens=agent.max_output_tokens * len(items),
            )
        except LlmError as exc:
            if self.gate is not None and grant is not None:
                self.gate.finish(
                    grant, tokens_in=None, outcome="failed" if exc.kind in ("server", "timeout") else "other"
                )
            raise
        if self.gate is not None and grant is not None:
            self.gate.finish(grant, tokens_in=response.usage.tokens_in, outcome="ok")
        answers = parse_answers(response.text, agent, [sid for sid, _ in items])
        row = LlmCall(
            batch_id=self.batch_id,
            agent=agent.name,
            model=model,
            step_count=len(items),
            status="ok" if all(a.ok for a in answers.values()) else "partial",
            tokens_in=response.usage.tokens_in,
            tokens_out=response.usage.tokens_out,
            tokens_cached=response.usage.tokens_cached,
            latency_ms=response.latency_ms,
            cost_usd=cost_usd(model, response.usage, self.prices),
        )
        row.id = uuid.uuid4()
        return answers, (row, [sid for sid, _ in items])
