"""A token's budget shared by every process that uses it, on every machine: slots drawn from a schedule
kept elsewhere (the writer keeps it in the ledger's database), sent only at their time.

Why: the process-local ``RateLimiter`` lets each process take the whole 50 writes/s of a token, so two runs
on one token get 429s. Here a ``SlotSource`` keeps one GCRA schedule per (token fingerprint, kind): a
process reserves a few consecutive slots at once (one atomic statement), turns them into its own monotonic
clock, and its requests leave only at those slots. Slots of different processes never overlap, so the sum
of everyone's requests keeps the token's rate. Two things make that hold in practice:

* a slot woken for more than ``grace`` after its time is dropped, not used late (a late request would
  crowd the next process's slots into the same second);
* reservations are demand-driven and bounded ahead (``ahead`` seconds), so a process that stops or dies
  wastes at most that much of the token's budget.

A source that cannot answer fails closed: no slot, no request, a ``BudgetUnavailableError`` as soon as
the reservation fails (the source bounds its own wait: a connect or lock timeout), or after ``timeout``
seconds without a slot and without an answer from the source (while it answers, a caller waits its turn in
line: the budget is shared, not down). The process-local limiter stays as a cap (its log of real start times).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import threading
import time
from collections import deque
from typing import Protocol, runtime_checkable

from trackstar_dagster.base.errors import TrackstarError
from trackstar_dagster.base.redaction import redacted_logger
from trackstar_dagster.client.ratelimit import RateLimiter

__all__ = ["BudgetUnavailableError", "SharedLimiter", "SharedLimiters", "SlotSource"]

logger = redacted_logger("trackstar_dagster.client.budget")

# One small pool for every limiter's reservations: they are short database statements, never on an event loop.
_RESERVERS = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="trackstar-budget")
#: a caller behind the first in line kicks after this many times ``ahead`` (a safety net: served callers
#: using their slots, new callers and answers keep the reservations coming)
BEHIND = 16


@runtime_checkable
class SlotSource(Protocol):
    """Where the shared schedules live (e.g. the ledger's database). ``name`` identifies it (no password)."""

    name: str

    def reserve(self, token: str, kind: str, count: int, interval: float) -> list[float]:
        """Reserve ``count`` consecutive slots ``interval`` seconds apart on the schedule of (``token``, a
        fingerprint, ``kind``); return their times on this process's ``time.monotonic()`` clock. Raise when
        the schedule cannot be reached."""
        ...


class BudgetUnavailableError(TrackstarError):
    """The shared budget could not be reached: nothing was sent (fail closed, never unlimited)."""

    outcome_unknown = False


class _Ticket:
    """A caller waiting for a slot, handed one by the reservation that brings it: one wake-up per caller (an
    async caller is woken at its slot's time), not every caller woken by every reservation."""

    __slots__ = ("error", "event", "future", "loop", "slot")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] | None = loop.create_future() if loop is not None else None
        self.event = threading.Event() if loop is None else None
        self.slot: float | None = None
        self.error: BaseException | None = None

    def arm(self) -> None:
        """On the caller's loop (whose clock is ``time.monotonic``): wake it at its slot, or now on an error."""
        assert self.loop is not None
        if self.slot is None or self.slot <= self.loop.time():
            self.wake()
        else:
            self.loop.call_at(self.slot, self.wake)

    def wake(self) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(None)


def _deliver(tickets: list[_Ticket]) -> None:
    """Wake the callers of served tickets (their ``slot`` or ``error`` set): threads at once, each event loop
    with one call for all its tickets (one wake-up of the loop, not one per ticket)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Ticket]] = {}
    for ticket in tickets:
        if ticket.event is not None:
            ticket.event.set()
        elif ticket.loop is not None:
            by_loop.setdefault(ticket.loop, []).append(ticket)
    if not by_loop:
        return
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for loop, armed in by_loop.items():
        if loop is running:
            _arm_all(armed)
        else:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_arm_all, armed)


def _arm_all(tickets: list[_Ticket]) -> None:
    for ticket in tickets:
        ticket.arm()


class SharedLimiter:
    """The slots of one (token, kind) for this process: same ``acquire``/``aacquire`` as a ``RateLimiter``."""

    def __init__(
        self,
        source: SlotSource,
        token: str,
        kind: str,
        rate_per_s: float,
        *,
        window: float,
        local: RateLimiter | None = None,
        batch: int | None = None,
        grace: float = 0.02,
        ahead: float | None = None,
        timeout: float = 30.0,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        self.source, self.token, self.kind = source, token, kind
        self.rate = float(rate_per_s)
        self.interval = float(window) / self.rate
        self.batch = max(1, int(batch if batch is not None else round(self.rate * 0.2)))
        self.grace = float(grace)
        self.ahead = float(ahead if ahead is not None else max(0.25, 2 * self.batch * self.interval))
        self.timeout = float(timeout)
        self.local = local
        # reentrant: a reservation that is already done runs its callback in the thread that registers it
        self._lock = threading.RLock()
        self._slots: deque[float] = deque()  # reserved, not yet handed out (monotonic times)
        self._tickets: deque[_Ticket] = deque()  # callers waiting for a slot, first come first served
        self._horizon = 0.0  # the last slot reserved
        self._refill: cf.Future[list[float]] | None = None
        self.answered = float("-inf")  # when a reservation last succeeded (monotonic)
        self.reserved = 0  # slots reserved, for figures and tests
        self.wasted = 0  # slots dropped: woken too late for them, or never asked for in time

    def __repr__(self) -> str:
        return f"SharedLimiter({self.source.name!r}, kind={self.kind!r}, rate_per_s={self.rate:g})"

    # -- slots and tickets (under the lock) ------------------------------------------------------------

    def _reserve(self) -> list[float]:
        return self.source.reserve(self.token, self.kind, self.batch, self.interval)

    def _maybe_refill(self, now: float) -> None:
        """Reserve the next batch while callers wait, never more than ``ahead`` seconds of slots ahead."""
        if self._refill is None and self._tickets and self._horizon - now < self.ahead:
            fut = self._refill = _RESERVERS.submit(self._reserve)
            fut.add_done_callback(self._refilled)

    def _serve(self, now: float) -> None:
        while self._slots and self._slots[0] < now - self.grace:
            self._slots.popleft()
            self.wasted += 1
        served = []
        while self._tickets and self._slots:
            ticket = self._tickets.popleft()
            ticket.slot = self._slots.popleft()
            served.append(ticket)
        _deliver(served)
        self._maybe_refill(now)

    def _refilled(self, fut: cf.Future[list[float]]) -> None:
        with self._lock:
            self._refill = None
            error = fut.exception() if not fut.cancelled() else cf.CancelledError()
            if error is not None:  # fail closed: every waiting caller gets the error, nothing is sent
                logger.warning(
                    "shared %s budget (%s) unavailable, %d request(s) not sent: %s: %s",
                    self.kind,
                    self.source.name,
                    len(self._tickets),
                    type(error).__name__,
                    error,
                )
                for ticket in self._tickets:
                    ticket.error = error
                _deliver(list(self._tickets))
                self._tickets.clear()
                return
            slots = fut.result()
            self.answered = time.monotonic()
            self.reserved += len(slots)
            self._slots.extend(slots)
            if slots:
                self._horizon = max(self._horizon, slots[-1])
            self._serve(time.monotonic())

    def _take(self, loop: asyncio.AbstractEventLoop | None) -> float | _Ticket:
        """A slot now, or a ticket to wait on (a reservation is started if none is under way)."""
        with self._lock:
            now = time.monotonic()
            self._serve(now)
            if self._slots and not self._tickets:
                return self._slots.popleft()
            ticket = _Ticket(loop)
            self._tickets.append(ticket)
            self._maybe_refill(now)
            return ticket

    def _patience(self, ticket: _Ticket) -> float:
        """How long a waiting caller sleeps before it kicks: ``ahead`` for the first in line, which keeps the
        reservations coming should no other event (a new caller, a reservation's answer, a slot used) do it;
        ``BEHIND`` times that for the rest. Every caller waking every ``ahead`` cost ~950 wake-ups a second in
        each of 8 runs sharing 8 tokens (~400 callers waiting per process), each doing nothing."""
        with self._lock:
            first = bool(self._tickets) and self._tickets[0] is ticket
        return self.ahead if first else self.ahead * BEHIND

    def _kick(self) -> None:
        """A caller waited ``ahead`` without a slot: serve and refill now (a reservation may be due). The caller
        keeps its place in line: giving it up to queue again starved callers when many processes share a
        token (some never reached the front and timed out while the source answered every reservation)."""
        with self._lock:
            self._serve(time.monotonic())

    def _gave_up(self, deadline: float) -> float | None:
        """At a caller's deadline: a new deadline while the source keeps answering (the wait is the budget
        being shared, not the source down), else None (fail closed)."""
        now = time.monotonic()
        if now - self.answered < self.timeout:
            return now + self.timeout
        return None

    def _withdraw(self, ticket: _Ticket) -> bool:
        """Take a ticket back (True), unless it was served meanwhile (its slot is then lost)."""
        with self._lock:
            if ticket in self._tickets:
                self._tickets.remove(ticket)
                return True
            return False

    def _used(self, slot: float) -> bool:
        """After sleeping to ``slot``: True when on time; late by more than ``grace``, it is dropped."""
        late = time.monotonic() > slot + self.grace
        with self._lock:
            self.wasted += late
            self._serve(time.monotonic())  # slots are being used up: the next batch may be due
        return not late

    def _unavailable(self, cause: BaseException | None) -> BudgetUnavailableError:
        why = f"{type(cause).__name__}: {cause}" if cause is not None else f"no slot in {self.timeout:g}s"
        return BudgetUnavailableError(
            f"the shared {self.kind} budget ({self.source.name}) could not be reached, so nothing was sent "
            f"(a token's budget is never left unlimited): {why}"
        )

    # -- waiting ---------------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Block the calling thread until this process's next slot."""
        deadline = time.monotonic() + self.timeout
        while True:
            got = self._take(None)
            if isinstance(got, _Ticket):
                assert got.event is not None
                while not got.event.wait(max(0.0, min(deadline - time.monotonic(), self._patience(got)))):
                    if time.monotonic() >= deadline:
                        later = self._gave_up(deadline)
                        if later is None:
                            if self._withdraw(got):
                                raise self._unavailable(None)
                            got.event.wait()  # served meanwhile
                            break
                        deadline = later
                    self._kick()  # a reservation may be due; the place in line is kept
                if got.error is not None:
                    raise self._unavailable(got.error) from got.error
                assert got.slot is not None
                got = got.slot
            while (delay := got - time.monotonic()) > 0:
                time.sleep(delay)
            if self._used(got):
                break
        if self.local is not None:
            while (wait := self.local.try_start()) > 0:
                time.sleep(wait)

    async def aacquire(self) -> None:
        """``acquire`` without blocking the event loop (reservations run in a thread)."""
        deadline = time.monotonic() + self.timeout
        loop = asyncio.get_running_loop()
        while True:
            got = self._take(loop)
            if isinstance(got, _Ticket):
                future = got.future
                assert future is not None
                try:
                    while True:
                        wait = max(0.0, min(deadline - time.monotonic(), self._patience(got)))
                        done, _ = await asyncio.wait({future}, timeout=wait)
                        if done:
                            break
                        if time.monotonic() >= deadline:
                            later = self._gave_up(deadline)
                            if later is None:
                                if self._withdraw(got):
                                    raise self._unavailable(None)
                                await future  # served meanwhile: woken at its slot
                                break
                            deadline = later
                        self._kick()  # a reservation may be due; the place in line is kept
                except BudgetUnavailableError:
                    raise
                except BaseException:  # cancelled: give the ticket back (a slot served meanwhile is lost)
                    if not self._withdraw(got) and got.slot is not None:
                        with self._lock:
                            self.wasted += 1
                    raise
                if got.error is not None:
                    raise self._unavailable(got.error) from got.error
                assert got.slot is not None
                got = got.slot
            while (delay := got - time.monotonic()) > 0:
                await asyncio.sleep(delay)  # may wake a hair early: the loop re-checks
            if self._used(got):
                break
        if self.local is not None:
            while (wait := self.local.try_start()) > 0:
                await asyncio.sleep(wait + 0.001)


class SharedLimiters:
    """Process-wide registry: one ``SharedLimiter`` per (source name, token fingerprint, kind)."""

    _lock = threading.Lock()
    _limiters: dict[tuple[str, str, str], SharedLimiter] = {}

    @classmethod
    def get(
        cls,
        source: SlotSource,
        token: str,
        kind: str,
        rate_per_s: float | None,
        *,
        window: float,
        local: RateLimiter | None,
    ) -> SharedLimiter | None:
        """The shared limiter of this key (None when ``rate_per_s`` is 0/None: limiting off)."""
        if not rate_per_s or rate_per_s <= 0:
            return None
        key = (source.name, token, kind)
        with cls._lock:
            limiter = cls._limiters.get(key)
            if limiter is None or limiter.rate != float(rate_per_s):
                limiter = cls._limiters[key] = SharedLimiter(
                    source, token, kind, rate_per_s, window=window, local=local
                )
            return limiter

    @classmethod
    def clear(cls) -> None:
        """Forget every limiter (tests)."""
        with cls._lock:
            cls._limiters.clear()
