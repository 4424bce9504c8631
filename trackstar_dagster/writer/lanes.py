"""The units of work of a write run, shared by its collaborators (plan, send, reconcile, results, run).

* ``Item``: one record on its way (its body, ledger entry, idempotency generation, attempts so far);
* ``Lane``: one connection (its token, client, queues, pacer and stop reason);
* ``Pacer``: even spacing of one connection's sends;
* ``InFlight``: how many of one connection's records are on their way at once (rate x latency);
* ``RetryPolicy``: how long one record is retried and how long to back off between tries.

Plain data with no run logic, so every collaborator can import it without importing the run.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..client import WriteResponse
from .actions import ActionSpec
from .ledger_table import LedgerEntry


class WriterClient(Protocol):
    """What the writer needs of a client (``TrackstarClient`` is one; tests may script their own)."""

    @property
    def write_rate(self) -> float | None: ...

    async def awrite(
        self, method: str, path: str, body: bytes, access_token: str, idempotency_key: str | None = None
    ) -> WriteResponse: ...

    async def alist_records(
        self,
        resource_path: str,
        access_token: str,
        filters: Mapping[str, Any] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]: ...


def utcnow() -> datetime:
    """The wall clock of result rows (``started_at``, ``finished_at``)."""
    return datetime.now(UTC)


@dataclass(eq=False)
class Item:
    """One record of the payloads frame on its way to Trackstar."""

    idx: int
    key: str
    connection: str
    action: str
    body: dict[str, Any]
    body_hash: str
    spec: ActionSpec
    entry: LedgerEntry | None
    operation: str  # create | update
    stage: str  # reconcile | send
    text: str = ""  # the body's JSON text, as hashed
    content: bytes = b""  # that text as it goes on the wire (encoded once, sent as is on every attempt)
    tag: str | None = None  # the key tag the body carries (None: untagged, nothing can be proven)
    tags: tuple[str, ...] = ()  # every tag that proves a record is this one (current, first release's)
    generation: int = 0
    trackstar_id: str | None = None
    attempts: int = 0
    unknown: bool = False  # a request of this record may have taken effect unseen
    sent_unknown: bool = False  # one of this run's requests with this body may have been stored
    started: float | None = None
    started_at: datetime | None = None
    idempotency: tuple[str, int, str, str] | None = None  # (operation, generation, body hash, its key)


class Pacer:
    """Even spacing of one connection's sends, on an absolute schedule (a late wake-up does not push
    the next slot back). It keeps the client's limiter queue short: many tasks parked in a limiter
    contend on every slot and the event loop lags; here each task sleeps until its own slot."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class InFlight:
    """How many of one connection's records may be on their way at once: its rate times its latency
    (Little's law), between ``floor`` and ``cap``; without a rate (or with a fixed ``concurrency``), ``cap``.

    The latency is the lowest seen over the last ~10 s (what a request takes when nothing queues), doubled
    for the spread above it. Not the mean or a high percentile: when Trackstar (or this process) is
    overloaded, answers are slow because requests queue, and a window sized by those latencies lets the
    queue grow without bound (measured: p50 latency 0.9 s -> 5 s with no gain in rate). A WMS that is slow
    for every request raises the lowest latency too, and the window with it."""

    HEADROOM = 2.0
    WINDOW_S = 10

    def __init__(self, rate: float | None, cap: int, *, floor: int = 4, latency_s: float = 0.5) -> None:
        self.rate = rate
        self.cap = max(1, int(cap))
        self.floor = min(max(1, floor), self.cap)
        self._mins: deque[tuple[int, float]] = deque()  # (second, lowest latency in it)
        self.target = self._target(latency_s)

    def observe(self, latency_s: float) -> None:
        """One answer's latency (seconds from send to answer)."""
        second = int(time.monotonic())
        mins = self._mins
        if mins and mins[-1][0] == second:
            if latency_s >= mins[-1][1]:
                return
            mins[-1] = (second, latency_s)
        else:
            mins.append((second, latency_s))
            while mins[0][0] <= second - self.WINDOW_S:
                mins.popleft()
        self.target = self._target(min(m for _, m in mins))

    def _target(self, latency_s: float) -> int:
        if not self.rate:
            return self.cap
        need = math.ceil(self.rate * latency_s * self.HEADROOM) + 2
        return max(self.floor, min(self.cap, need))


@dataclass(eq=False)
class Lane:
    """One connection: its token, its queues and its stop reason."""

    connection: str
    token: str
    client: WriterClient
    pending: deque[Item] = field(default_factory=deque)  # need an intent before sending
    ready: asyncio.Queue[Item | None] = field(default_factory=asyncio.Queue)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    unfinished: int = 0
    stop_reason: str | None = None
    server_errors: int = 0  # consecutive 5xx answers (writes and look-ups); any other answer resets it
    pacer: Pacer = field(default_factory=lambda: Pacer(None))
    in_flight: InFlight = field(default_factory=lambda: InFlight(None, 1))
    workers: int = 0  # its sender tasks alive (``in_flight.target`` of them while there is work)

    def requeue(self, item: Item) -> None:
        """Back to the lane's queue: a fresh intent (for this body and operation) before it is sent."""
        item.stage = "send"
        self.pending.appendleft(item)
        self.wake.set()


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on one record: ``max_attempts`` sends (or look-ups) with unknown outcomes, ``max_wait_s``
    seconds spent waiting out 429s; jittered exponential backoff between tries."""

    max_attempts: int = 5
    max_wait_s: float = 120.0
    backoff_base: float = 0.25
    backoff_max: float = 8.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1``: full jitter over the upper half of the ceiling."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)
