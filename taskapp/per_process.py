"""One of a thing per process: clients, engines and pools that must not cross a fork.

A prefork worker's children inherit their parent's memory, sockets included; a
connection used from two processes corrupts both. `per_process(build)` remembers what
`build(*key)` made in this process, and a forked child builds its own.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, overload

T = TypeVar("T")


class PerProcess(Generic[T]):
    """`build(*args)`, made once per process and key (by default the arguments themselves)."""

    def __init__(self, build: Callable[..., T], key: Callable[..., tuple[Hashable, ...]] | None = None) -> None:
        self._build = build
        self._key = key or (lambda *args: args)
        self._made: dict[tuple[Hashable, ...], T] = {}
        # A threads-pool worker's first tasks all ask at once: one builds, the others wait for
        # it (two engines or clients would each open their own connections). Reentrant: a
        # builder may ask for another per-process thing.
        self._lock = threading.RLock()
        os.register_at_fork(after_in_child=self._fresh_lock)  # a lock held across a fork stays held
        functools.update_wrapper(self, build)

    def _fresh_lock(self) -> None:
        self._lock = threading.RLock()

    def __call__(self, *args: object) -> T:
        slot = (os.getpid(), *self._key(*args))
        made = self._made.get(slot)
        if made is None:
            with self._lock:
                made = self._made.get(slot)
                if made is None:
                    made = self._made[slot] = self._build(*args)
        return made

    def made(self) -> list[T]:
        """Everything made here or inherited from a parent before a fork (to dispose of)."""
        return list(self._made.values())

    def forget(self) -> None:
        """Forget everything made, in this process and any parent's copy."""
        self._made.clear()


@overload
def per_process(build: Callable[..., T]) -> PerProcess[T]: ...


@overload
def per_process(*, key: Callable[..., tuple[Hashable, ...]]) -> Callable[[Callable[..., T]], PerProcess[T]]: ...


def per_process(
    build: Callable[..., T] | None = None, *, key: Callable[..., tuple[Hashable, ...]] | None = None
) -> PerProcess[T] | Callable[[Callable[..., T]], PerProcess[T]]:
    """Decorate a builder so each process builds (and then reuses) its own; `key` picks which
    arguments tell two apart (`key=lambda *_: ()`: one per process whatever the arguments)."""
    if build is None:
        return lambda fn: PerProcess(fn, key)
    return PerProcess(build, key)
