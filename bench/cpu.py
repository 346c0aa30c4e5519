"""CPU seconds spent by each part of the stack over a measured interval (all processes on the machine)."""

from __future__ import annotations

from collections import Counter

import psutil

# Command-line fragments that name a part of the stack, first match wins.
PARTS = (
    ("taskapp.pipeline.flusher", "flusher"),
    ("celery", "Celery worker node"),
    ("gunicorn", "web (gunicorn)"),
    ("postgres", "PostgreSQL"),
    ("redis-server", "Redis"),
    ("gemini-sim", "Gemini simulator"),
    ("bench.", "load generator"),
)


def snapshot() -> dict[int, tuple[float, str]]:
    """Each process's CPU seconds so far, with the part it belongs to."""
    out = {}
    for proc in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            times = proc.cpu_times()
            cmd = " ".join(proc.info["cmdline"] or [proc.info["name"] or ""])
        except psutil.Error:
            continue
        out[proc.pid] = (times.user + times.system, next((part for frag, part in PARTS if frag in cmd), "other"))
    return out


def spent_since(before: dict[int, tuple[float, str]]) -> Counter[str]:
    """CPU seconds per part between `before` and now (processes started since count in full)."""
    spent: Counter[str] = Counter()
    for pid, (seconds, part) in snapshot().items():
        spent[part] += seconds - before.get(pid, (0.0, part))[0]
    return spent
