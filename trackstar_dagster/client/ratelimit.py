"""Client-side rate limiting, shared by every thread and asyncio task of one process.

Trackstar limits each access token (10 reads/s, 50 writes/s). Many clients, threads and tasks may use
the same token at once, so the budget lives in a process-wide registry keyed by a fingerprint of the
token (never the token itself) and the kind of call. Across processes and machines, ``shared_budget`` draws
the slots from a schedule they share, and this limiter stays as each process's cap.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque

from trackstar_dagster.base.redaction import fingerprint

__all__ = ["RateLimiter", "RateLimiters"]


class RateLimiter:
    """At most ``rate_per_s`` starts in any 1-second window, spread out evenly.

    Two rules, both enforced under one short-held lock, with all waiting done outside it:

    * a GCRA schedule hands each caller a "next free slot" (spacing ``1/rate``, up to ``burst``
      back-to-back), so waiters are served roughly first-come first-served without a thundering herd;
    * a log of the actual start times of the last ``floor(rate)`` grants: a caller that woke late from
      its slot still cannot make the window overflow, because the check is against real start times.
    """

    def __init__(self, rate_per_s: float, burst: int | None = None, *, window: float = 1.0) -> None:
        """``window`` slightly above 1 s leaves a margin for network jitter against a server's own window."""
        if rate_per_s is None or rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0 (use no limiter to switch limiting off)")
        if window < 1.0:
            raise ValueError("window must be >= 1 second")
        self._lock = threading.Lock()
        self._tat = 0.0  # GCRA theoretical arrival time (monotonic seconds)
        self._window = float(window)
        self._configure(rate_per_s, burst)

    def _configure(self, rate_per_s: float, burst: int | None) -> None:
        self.rate = float(rate_per_s)
        self.capacity = max(1, math.floor(self.rate))
        self.burst = max(1, min(int(burst or 1), self.capacity))
        self._interval = self._window / self.rate
        self._starts: deque[float] = deque(maxlen=self.capacity)

    def reconfigure(self, rate_per_s: float, burst: int | None = None) -> None:
        """Change the rate in place (the registry's last-configured-wins rule); keeps recent starts."""
        with self._lock:
            if float(rate_per_s) == self.rate and max(1, int(burst or 1)) == self.burst:
                return
            old = list(self._starts)
            self._configure(rate_per_s, burst)
            self._starts.extend(old[-self.capacity :])

    def __repr__(self) -> str:
        return f"RateLimiter(rate_per_s={self.rate:g}, burst={self.burst})"

    def _reserve(self) -> float:
        """Take the next slot on the schedule; returns its monotonic time (may be now)."""
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat, now)
            slot = max(now, tat - (self.burst - 1) * self._interval)
            self._tat = tat + self._interval
            return slot

    def try_start(self) -> float:
        """Record a start now if the window allows it (returns 0.0), else how long to wait (the cap a
        ``SharedLimiter`` keeps: this process's real start times)."""
        with self._lock:
            now = time.monotonic()
            if len(self._starts) == self.capacity:
                wait = self._starts[0] + self._window - now
                if wait > 0:
                    return wait
            self._starts.append(now)
            return 0.0

    def acquire(self) -> None:
        """Block the calling thread until a request may start."""
        delay = self._reserve() - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        while (wait := self.try_start()) > 0:
            time.sleep(wait)

    async def aacquire(self) -> None:
        """Wait (without blocking the event loop) until a request may start."""
        delay = self._reserve() - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while (wait := self.try_start()) > 0:
            # asyncio may wake a hair early; the loop above re-checks, so a small pad avoids spinning
            await asyncio.sleep(wait + 0.001)


class RateLimiters:
    """Process-wide registry of limiters keyed by (secret fingerprint, kind), e.g. (fp, "write").

    Several clients for the same token share one budget. If two clients configure different rates for
    the same key, the last one configured wins (the limiter is reconfigured in place).
    """

    _lock = threading.Lock()
    _limiters: dict[tuple[str, str], RateLimiter] = {}

    @classmethod
    def get(
        cls,
        token_fingerprint: str,
        kind: str,
        rate_per_s: float | None,
        burst: int | None = None,
        *,
        window: float = 1.0,
    ) -> RateLimiter | None:
        """The shared limiter for this key, or None when ``rate_per_s`` is 0/None (limiting off)."""
        if not rate_per_s or rate_per_s <= 0:
            return None
        key = (token_fingerprint, kind)
        with cls._lock:
            limiter = cls._limiters.get(key)
            if limiter is None:
                limiter = cls._limiters[key] = RateLimiter(rate_per_s, burst, window=window)
            else:
                limiter.reconfigure(rate_per_s, burst)
            return limiter

    @classmethod
    def for_secret(
        cls,
        secret: str | None,
        kind: str,
        rate_per_s: float | None,
        burst: int | None = None,
        *,
        window: float = 1.0,
    ) -> RateLimiter | None:
        """``get`` keyed by the fingerprint of a token or API key."""
        return cls.get(fingerprint(secret), kind, rate_per_s, burst, window=window)

    @classmethod
    def clear(cls) -> None:
        """Forget every limiter (tests)."""
        with cls._lock:
            cls._limiters.clear()
