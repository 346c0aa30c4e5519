"""The simulator's state: what it was asked (the request log, calls in flight), the faults and
quotas it applies, and its prompt cache; shared by the server's handler threads."""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from taskapp.dev.gemini_sim.prompt_cache import PromptCache
from taskapp.dev.gemini_sim.quotas import SimQuotas


class SimulatorState:
    """What the simulator was asked and how it answers; shared by handler threads."""

    def __init__(self, latency_ms: int = 0, log_size: int = 200_000) -> None:
        self.latency_ms = latency_ms
        # Answer faults: [{"match": str, "kind": "drop"|"corrupt", "times": int (-1: always)}]. A
        # batched task whose input contains `match` loses its answer, or gets one that fails
        # the schema, at most `times` times per step id.
        self.answer_faults: list[dict[str, Any]] = []
        self._fault_counts: dict[tuple[int, str], int] = {}
        self.quotas = SimQuotas()  # quotas enforced as Gemini does, and errors to inject
        self.prompt_cache = PromptCache()  # Gemini's implicit prompt cache, generically
        # Values forced into every answer's output, e.g. {"approved": false}: a reviewer that never approves.
        self.output_overrides: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self.seq = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    def call_started(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def call_ended(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def inflight(self) -> dict[str, int]:
        with self.lock:
            return {"in_flight": self.in_flight, "peak": self.peak_in_flight}

    def reset_peak(self) -> None:
        with self.lock:
            self.peak_in_flight = self.in_flight

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.append(entry)

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.log if e["seq"] > since]

    def configure(self, body: dict[str, Any]) -> None:
        if "latency_ms" in body:
            self.latency_ms = max(0, int(body["latency_ms"]))
        self.quotas.configure(body)
        self.prompt_cache.configure(body)
        if "output_overrides" in body:
            if not isinstance(body["output_overrides"], dict):
                raise ValueError("output_overrides: an object of output field -> value")
            self.output_overrides = dict(body["output_overrides"])
        if "answer_faults" in body:
            faults = body["answer_faults"]
            if not isinstance(faults, list) or not all(
                isinstance(f, dict) and isinstance(f.get("match"), str) and f.get("kind") in ("drop", "corrupt")
                for f in faults
            ):
                raise ValueError('answer_faults: a list of {"match": str, "kind": "drop"|"corrupt", "times": int}')
            with self.lock:
                self.answer_faults = [dict(f, times=int(f.get("times", -1))) for f in faults]
                self._fault_counts.clear()

    def reset(self) -> None:
        with self.lock:
            self.log.clear()
            self.peak_in_flight = self.in_flight
            self.answer_faults = []
            self._fault_counts.clear()
            self.output_overrides = {}
        self.quotas.reset()
        self.prompt_cache.reset()

    def apply_faults(self, value: Any, tasks: list[dict[str, Any]]) -> int:
        """Force configured output fields, drop or corrupt the answers of matching tasks; returns how many were hit."""
        if not isinstance(value, dict) or not isinstance(value.get("answers"), list):
            return 0
        for answer in value["answers"]:
            if self.output_overrides and isinstance(answer, dict) and isinstance(answer.get("output"), dict):
                answer["output"].update({k: v for k, v in self.output_overrides.items() if k in answer["output"]})
        if not self.answer_faults:
            return 0
        inputs = {str(t.get("step_id")): json.dumps(t.get("input"), ensure_ascii=False) for t in tasks}
        hit = 0
        kept = []
        with self.lock:
            for answer in value["answers"]:
                sid = str(answer.get("step_id")) if isinstance(answer, dict) else ""
                kind = None
                for index, rule in enumerate(self.answer_faults):
                    count = self._fault_counts.get((index, sid), 0)
                    if rule["match"] in inputs.get(sid, "") and (rule["times"] < 0 or count < rule["times"]):
                        self._fault_counts[(index, sid)] = count + 1
                        kind = rule["kind"]
                        break
                if kind == "drop":
                    hit += 1
                    continue
                if kind == "corrupt":
                    hit += 1
                    answer = {"step_id": sid, "output": {"corrupted": True}}
                kept.append(answer)
        value["answers"] = kept
        return hit
