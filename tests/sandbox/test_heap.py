"""The sandbox's own process keeps Python's collector from stalling it (sandbox/heap.py).

Why it matters: a full collection walks every stored record; at ~40,000 orders it stalled the server
160-240 ms every 10-18 s (measured), requests sent evenly within 50/s queued behind the stall and were then
judged as one burst by the exact sliding window: ~1.5% of a benchmark's writes refused with 429s that no
client could have avoided.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from trackstar_dagster.sandbox.heap import HeapKeeper


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def clean_gc() -> Iterator[None]:
    """Run with nothing frozen, and leave nothing frozen (this is the test process's collector)."""
    gc.unfreeze()
    gc.collect()
    try:
        yield
    finally:
        gc.unfreeze()


def test_a_busy_tick_freezes_what_lives_and_frees_young_cycles_first(clean_gc: None) -> None:
    keeper = HeapKeeper(lambda: 0)
    live = [{"order": i, "lines": [i]} for i in range(5_000)]
    dead = Node()
    ref = weakref.ref(dead)
    del dead
    keeper.tick(busy=True)
    assert ref() is None, "garbage in the young generations is collected before freezing, not frozen"
    assert gc.get_freeze_count() >= len(live), (
        "the records that live on are frozen: full collections skip them"
    )
    assert len(gc.get_objects(generation=2)) < 1_000


def test_an_idle_tick_frees_cycles_that_died_after_being_frozen(clean_gc: None) -> None:
    keeper = HeapKeeper(lambda: 0)
    node = Node()
    ref = weakref.ref(node)
    keeper.tick(busy=True)  # frozen while alive
    del node
    gc.collect()
    assert ref() is not None, "a frozen cycle is out of the collector's reach"
    keeper.tick(busy=False)
    assert ref() is None, "an idle tick unfreezes, collects everything, and freezes again"
    assert gc.get_freeze_count() > 0


def test_an_idle_tick_with_nothing_new_does_no_full_collection(clean_gc: None) -> None:
    keeper = HeapKeeper(lambda: 0)
    keeper.tick(busy=True)
    assert keeper.tick(busy=False) == "full"
    assert keeper.tick(busy=False) == "idle", "nothing frozen since the last full collection: nothing to do"


def test_the_keeper_ticks_on_the_request_count(clean_gc: None) -> None:
    served = [0]
    seen: list[str] = []

    def on_tick(outcome: str) -> None:
        seen.append(outcome)
        if len(seen) == 1:
            served[0] += 5  # requests come in between the first tick and the second

    keeper = HeapKeeper(lambda: served[0], every_s=0.01, on_tick=on_tick)

    async def serve() -> None:
        task = asyncio.create_task(keeper.run())
        while len(seen) < 3:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(serve())
    assert gc.get_freeze_count() > 0, "what the server holds when it starts is frozen"
    assert seen[:3] == ["idle", "froze", "full"], seen


def test_a_sandbox_in_a_thread_leaves_the_test_process_collector_alone(clean_gc: None) -> None:
    """Only a process that is the sandbox's alone tunes its collector: a thread's keeps it as it was."""
    import time

    import httpx

    from trackstar_dagster.sandbox.server import run_sandbox

    with run_sandbox() as sb:
        headers = {"x-trackstar-api-key": sb.api_key, "x-trackstar-access-token": "sandbox-token-wms"}
        deadline = time.monotonic() + 2.5  # longer than a keeper's tick, requests coming in
        while time.monotonic() < deadline:
            assert httpx.get(f"{sb.base_url}/wms/orders", headers=headers).status_code == 200
            time.sleep(0.2)
    assert gc.get_freeze_count() == 0
