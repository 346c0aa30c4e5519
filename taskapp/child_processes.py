"""Child processes that never outlive their parent."""

from __future__ import annotations

import signal
import sys


def die_with_parent() -> None:
    """In the child (a preexec_fn): get SIGTERM when the parent dies, however it dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
