"""Token estimates (the one copy: the quota gate, the prompt and the simulator count alike) and context trimming."""

from __future__ import annotations

import math

TRIM_MARK = " …[trimmed]"
CHARS_PER_TOKEN = 4  # the calibration Gemini's tokenizer gives English prose


def estimate_tokens(text: str) -> int:
    """About four characters a token."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def trim_to_budget(parts: list[str], budget_tokens: int) -> list[str]:
    """Shorten parts so their total fits the budget, sharing it fairly.

    Short parts keep everything; what they leave unused goes to the long ones
    (water-filling), so one long finding cannot crowd out the others.
    """
    if not parts:
        return []
    budget_chars = max(budget_tokens, len(parts)) * CHARS_PER_TOKEN
    lengths = [len(p) for p in parts]
    if sum(lengths) <= budget_chars:
        return list(parts)
    caps = [0] * len(parts)
    remaining = budget_chars
    open_idx = sorted(range(len(parts)), key=lambda i: lengths[i])
    while open_idx:
        share = remaining // len(open_idx)
        i = open_idx[0]
        if lengths[i] <= share:
            caps[i] = lengths[i]
            remaining -= lengths[i]
            open_idx.pop(0)
        else:
            for j in open_idx:
                caps[j] = share
            break
    out = []
    for part, cap in zip(parts, caps, strict=True):
        if len(part) <= cap:
            out.append(part)
        else:
            keep = max(0, cap - len(TRIM_MARK))
            out.append(part[:keep] + TRIM_MARK)
    return out
