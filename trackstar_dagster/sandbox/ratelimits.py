"""Server-side rate limits: a sliding window per (token, kind), like Trackstar's per-token budgets.

A sliding log (timestamps of the last window) is exact: never more than ``rate`` admitted requests in any
window, which is what a client limiter is tested against.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass


@dataclass
class Verdict:
    """The outcome of one check, with the values of the ``x-ratelimit-*`` headers."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds when a slot frees up
    retry_after: int  # seconds (ceil), 0 when allowed

    def headers(self) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers, and ``retry-after`` when refused."""
        h = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset),
        }
        if not self.allowed:
            h["retry-after"] = str(self.retry_after)
        return h


class SlidingWindow:
    """At most ``rate`` admitted events per ``window`` seconds. Event-loop thread only (no lock needed)."""

    def __init__(self, rate: float, window: float = 1.0) -> None:
        self.rate = rate
        self.window = window
        self.events: deque[float] = deque()

    def check(self, now: float | None = None) -> Verdict:
        """Admit (and count) one event at ``now`` if the last ``window`` seconds hold fewer than ``rate``."""
        now = time.time() if now is None else now
        limit = max(1, int(self.rate))
        while self.events and self.events[0] <= now - self.window:
            self.events.popleft()
        if len(self.events) < limit:
            self.events.append(now)
            oldest = self.events[0]
            return Verdict(True, limit, limit - len(self.events), math.ceil(oldest + self.window), 0)
        oldest = self.events[0]
        wait = oldest + self.window - now
        return Verdict(False, limit, 0, math.ceil(oldest + self.window), max(1, math.ceil(wait)))


#: arrivals kept per (who, kind): enough for minutes at a token's full rate
ARRIVALS_KEPT = 100_000


class RateLimits:
    """All the windows of one sandbox, keyed by (who, kind); a rate of 0/None means unlimited.

    Every data request's arrival is logged (epoch seconds, admitted or refused) per (who, kind), limited or
    not, so a test can check what clients sent in any 1-second window, whichever process sent it.
    """

    def __init__(self, write_rate: float | None = 50.0, read_rate: float | None = 10.0) -> None:
        self.rates: dict[str, float | None] = {"write": write_rate, "read": read_rate, "catalog": 1.0}
        self.windows: dict[tuple[str, str], SlidingWindow] = {}
        self.arrivals: dict[tuple[str, str], deque[tuple[float, bool]]] = {}
        self.count = 0  # data requests arrived since start (resets keep counting)

    def arrived(self, who: str, kind: str) -> Verdict | None:
        """``check``, with the arrival logged."""
        self.count += 1
        verdict = self.check(who, kind)
        log = self.arrivals.get((who, kind))
        if log is None:
            log = self.arrivals[(who, kind)] = deque(maxlen=ARRIVALS_KEPT)
        log.append((time.time(), verdict is None or verdict.allowed))
        return verdict

    def arrival_log(self, who: str, kind: str) -> list[tuple[float, bool]]:
        """(epoch seconds, admitted) of every request of (who, kind) since the last reset."""
        return list(self.arrivals.get((who, kind), ()))

    def set_rate(self, kind: str, rate: float | None) -> None:
        """Change a kind's rate; its windows start afresh (their history was counted against the old rate)."""
        self.rates[kind] = rate
        for key in [k for k in self.windows if k[1] == kind]:
            del self.windows[key]

    def check(self, who: str, kind: str) -> Verdict | None:
        """None when ``kind`` is unlimited; else the verdict (and the request is counted when allowed)."""
        rate = self.rates.get(kind)
        if not rate:
            return None
        window = 60.0 if kind == "catalog" else 1.0
        sw = self.windows.get((who, kind))
        if sw is None:
            sw = self.windows[(who, kind)] = SlidingWindow(rate, window)
        return sw.check()

    def reset(self) -> None:
        """Forget every window (all budgets are full again) and the arrival log."""
        self.windows.clear()
        self.arrivals.clear()
