"""The units of work of a write run, shared by its collaborators (plan, send, reconcile, results, run).

* ``Item``: one record on its way (its body, ledger entry, idempotency generation, attempts so far);
* ``Lane``: one connection (its token, client, queues, pacer and stop reason);
* ``Pacer``: even spacing of one connection's sends;
* ``RetryPolicy``: how long one record is retried and how long to back off between tries.

Plain data with no run logic, so every collaborator can import it without importing the run.
"""

from __future__ import annotations

import asyncio
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
