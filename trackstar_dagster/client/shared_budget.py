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

A source that cannot answer fails closed: no slot, no request, a ``BudgetUnavailableError`` after
``timeout`` seconds. The process-local limiter stays as a cap (its log of real start times).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
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
        self._slots: deque[float] = deque()
        self._horizon = 0.0  # the last slot reserved (monotonic)
        self._wanting = 0  # callers waiting without a slot
        self._refill: cf.Future[list[float]] | None = None
        self.reserved = 0  # slots reserved, for figures and tests
        self.wasted = 0  # slots dropped because they were woken too late

    def __repr__(self) -> str:
        return f"SharedLimiter({self.source.name!r}, kind={self.kind!r}, rate_per_s={self.rate:g})"

    # -- the slot queue (under the lock) ---------------------------------------------------------------

    def _reserve(self) -> list[float]:
        return self.source.reserve(self.token, self.kind, self.batch, self.interval)

    def _start_refill(self) -> cf.Future[list[float]]:
        fut = _RESERVERS.submit(self._reserve)
        self._refill = fut
        fut.add_done_callback(self._refilled)
        return fut

    def _refilled(self, fut: cf.Future[list[float]]) -> None:
        with self._lock:
            self._refill = None
            if fut.cancelled() or fut.exception() is not None:
                return
            slots = fut.result()
            self.reserved += len(slots)
            self._slots.extend(slots)
            if slots:
                self._horizon = max(self._horizon, slots[-1])

    def _next(self) -> float | cf.Future[list[float]]:
        """A slot (monotonic time, taken), or the reservation to wait for, or seconds to sleep (negative)."""
        with self._lock:
            now = time.monotonic()
            while self._slots and self._slots[0] < now - self.grace:
                self._slots.popleft()
                self.wasted += 1
            if self._slots:
                slot = self._slots.popleft()
                self._wanting -= 1
                if (
                    self._refill is None
                    and self._wanting > len(self._slots)
                    and self._horizon - now < self.ahead
                ):
                    self._start_refill()  # more callers than slots: the next batch before this one runs out
                return slot
            if self._refill is not None:
                return self._refill
            if self._horizon - now > self.ahead:  # reserved far enough ahead already: wait for that
                return -(self._horizon - now - self.ahead)
            return self._start_refill()

    def _missed(self, slot: float) -> bool:
        """Woken too late for ``slot``: drop it (it is counted as wasted) and want another."""
        if time.monotonic() <= slot + self.grace:
            return False
        with self._lock:
            self.wasted += 1
            self._wanting += 1
        return True

    def _enter(self) -> float:
        with self._lock:
            self._wanting += 1
        return time.monotonic() + self.timeout

    def _leave(self) -> None:
        """A caller gives up without a slot (error, timeout, cancellation)."""
        with self._lock:
            self._wanting -= 1

    def _unavailable(self, cause: BaseException | None) -> BudgetUnavailableError:
        why = f"{type(cause).__name__}: {cause}" if cause is not None else f"no answer in {self.timeout:g}s"
        return BudgetUnavailableError(
            f"the shared {self.kind} budget ({self.source.name}) could not be reached, so nothing was sent "
            f"(a token's budget is never left unlimited): {why}"
        )

    # -- waiting ---------------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Block the calling thread until this process's next slot (a reservation may be made here)."""
        deadline, slot, holding = self._enter(), None, False
        try:
            while slot is None:
                got = self._next()
                left = deadline - time.monotonic()
                if isinstance(got, cf.Future):
                    try:
                        got.result(timeout=max(0.0, left))
                    except Exception as e:
                        raise self._unavailable(None if isinstance(e, TimeoutError) else e) from e
                elif got < 0:
                    if left <= 0:
                        raise self._unavailable(None)
                    time.sleep(min(-got, left))
                else:
                    holding = True  # taken: no longer wanting, unless missed
                    while (delay := got - time.monotonic()) > 0:
                        time.sleep(delay)
                    if self._missed(got):
                        holding = False
                    else:
                        slot = got
        except BaseException:
            if not holding:
                self._leave()
            raise
        if self.local is not None:
            while (wait := self.local.try_start()) > 0:
                time.sleep(wait)

    async def aacquire(self) -> None:
        """``acquire`` without blocking the event loop (reservations run in a thread)."""
        deadline, slot, holding = self._enter(), None, False
        try:
            while slot is None:
                got = self._next()
                left = deadline - time.monotonic()
                if isinstance(got, cf.Future):
                    try:
                        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(got)), max(0.0, left))
                    except Exception as e:
                        raise self._unavailable(None if isinstance(e, TimeoutError) else e) from e
                elif got < 0:
                    if left <= 0:
                        raise self._unavailable(None)
                    await asyncio.sleep(min(-got, left))
                else:
                    holding = True  # taken: no longer wanting, unless missed
                    while (delay := got - time.monotonic()) > 0:
                        await asyncio.sleep(delay)  # may wake a hair early: the loop re-checks
                    if self._missed(got):
                        holding = False
                    else:
                        slot = got
        except BaseException:
            if not holding:
                self._leave()
            raise
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
