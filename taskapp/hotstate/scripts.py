"""The Lua scripts the hot state runs atomically in Redis, read once from `lua/*.lua`.

Each file opens with the KEYS and ARGV it takes and what it returns. Redis runs a script
without interleaving any other command, which is what makes a buffer's take and the quota
gate's grant exact however many processes race for them.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def load(name: str) -> str:
    """The source of `lua/<name>.lua` (package data, so an installed package has it too)."""
    return files("taskapp.hotstate").joinpath("lua", f"{name}.lua").read_text()
