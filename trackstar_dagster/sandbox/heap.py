"""The sandbox's own process keeps Python's cyclic collector from stalling it.

Why: the sandbox keeps every record it stores in memory. A full collection walks all of them: at ~40,000
orders it stalled the server 160-240 ms every 10-18 s (measured in ``benchmarks/writes.py``). Requests a
client sent evenly within its 50 writes/s queued behind the stall and were then judged together by the exact
sliding window, so ~1.5% of the writes were refused with 429s no client could have avoided: the sandbox,
not the client, broke the rate. A real API's limiter does not stop for its own housekeeping.

So, in a process that is the sandbox's alone (the command, ``run_sandbox(subprocess=True)``):

- at start, and every ``every_s`` while requests come in, the young generations are collected and what
  survives is frozen (``gc.freeze``): full collections no longer walk the stored records;
- when a tick finds no request since the last one, the heap is unfrozen, collected whole and frozen again, so
  a reference cycle that died after it was frozen is still freed (measured: the sandbox makes none under a
  write load, so this is a safety net, run while nobody waits on the server).

A sandbox in a thread of a test process leaves that process's collector alone.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

__all__ = ["HeapKeeper"]


class HeapKeeper:
    """Ticks every ``every_s`` on the server's loop; ``requests`` counts the requests served so far."""

    def __init__(
        self,
        requests: Callable[[], int],
        *,
        every_s: float = 2.0,
        on_tick: Callable[[str], None] | None = None,
    ) -> None:
        self._requests = requests
        self.every_s = every_s
        self._on_tick = on_tick
        self._frozen_since_full = False

    def tick(self, busy: bool) -> str:
        """One step: ``froze`` (busy), ``full`` (idle after freezing), or ``idle`` (nothing to do)."""
        if busy:
            gc.collect(1)  # the young generations' garbage goes first; it is never frozen
            gc.freeze()
            self._frozen_since_full = True
            return "froze"
        if self._frozen_since_full:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self._frozen_since_full = False
            return "full"
        return "idle"

    async def run(self) -> None:
        """Freeze what the server holds at start, then tick until cancelled."""
        gc.collect()
        gc.freeze()
        seen = self._requests()
        while True:
            await asyncio.sleep(self.every_s)
            now = self._requests()
            outcome = self.tick(busy=now != seen)
            seen = now
            if self._on_tick is not None:
                self._on_tick(outcome)
