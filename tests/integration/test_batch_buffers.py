"""The shared batch buffers on their own (Redis only; an agent no flusher watches)."""

from __future__ import annotations

import threading
import time
import uuid

from taskapp.domain.batching import BatchPolicy
from taskapp.hotstate.buffers import Lane


def test_racing_takers_get_each_step_exactly_once(batcher):
    policy = BatchPolicy(max_size=4, max_wait_ms=0)
    lane = Lane(f"test-agent-{uuid.uuid4().hex[:6]}", "m", "test-agent", policy)
    ids = [str(uuid.uuid4()) for _ in range(400)]
    for i in range(0, len(ids), 50):
        batcher.offer(lane, ids[i : i + 50])
    assert batcher.offer(lane, ids[:10]) == 400  # offering again never duplicates
    taken: list[list[str]] = []
    lock = threading.Lock()

    def take() -> None:
        while True:
            got = batcher.take(lane, max_batches=1)
            if not got:
                return
            with lock:
                taken.append([t.step_id for t in got])

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [sid for batch in taken for sid in batch]
    assert sorted(flat) == sorted(ids)  # every step once, none twice
    assert all(len(batch) <= policy.max_size for batch in taken)


def test_take_waits_for_a_full_batch_or_the_window(batcher):
    policy = BatchPolicy(max_size=3, max_wait_ms=300)
    lane = Lane(f"test-agent-{uuid.uuid4().hex[:6]}", "m", "test-agent", policy)
    batcher.offer(lane, ["a", "b"])
    assert batcher.take(lane) == []  # neither full nor due
    batcher.offer(lane, ["c", "d"])
    full = batcher.take(lane)
    assert [t.step_id for t in full] == ["a", "b", "c"]  # one full batch, oldest first; "d" waits
    assert batcher.size(lane.lane, "m") == 1
    time.sleep(0.35)
    late = batcher.take(lane)
    assert [t.step_id for t in late] == ["d"] and late[0].wait_ms >= 300
    batcher.offer(lane, ["e"])
    assert [t.step_id for t in batcher.take(lane, force=True)] == ["e"]  # interactive
