"""The client's shared budget in one process, on a real SQLite schedule and the real sandbox: what one call
reserves (little: an unused reservation wastes the token's budget for everyone), slots spaced at the rate
whichever of two clients takes them, and the schedule keyed by the token's fingerprint only."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trackstar_dagster.base.redaction import fingerprint
from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.client.ratelimit import RateLimiters
from trackstar_dagster.client.send import SHARED_WINDOW_S
from trackstar_dagster.client.shared_budget import SharedLimiter, SharedLimiters
from trackstar_dagster.writer.ledger_budget import LedgerBudget

TOKEN = "sandbox-token-wms"
ORDER: dict[str, Any] = {
    "order_number": "SO-1",
    "ship_to_address": {
        "address1": "1 Main St",
        "city": "Austin",
        "state": "TX",
        "postal_code": "78701",
        "country": "US",
    },
    "line_items": [{"product_id": "prod-1", "quantity": 2}],
}


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    RateLimiters.clear()
    SharedLimiters.clear()
    yield
    RateLimiters.clear()
    SharedLimiters.clear()


@pytest.fixture
def budget(tmp_path: Path) -> Iterator[LedgerBudget]:
    b = LedgerBudget(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield b
    b.close()


def limiter(client: TrackstarClient, kind: str) -> SharedLimiter:
    found = client._sender._limiter(kind, TOKEN)  # noqa: SLF001 - the test looks at what a call reserved
    assert isinstance(found, SharedLimiter)
    return found


def test_one_call_reserves_one_small_batch(sandbox: Any, budget: LedgerBudget) -> None:
    client = TrackstarClient(sandbox.api_key, sandbox.base_url, slot_source=budget)
    client.write("POST", "/wms/orders", ORDER, TOKEN)
    client.list_records("/wms/orders", TOKEN)
    assert (limiter(client, "write").reserved, limiter(client, "read").reserved) == (10, 2)
    rows = {r["kind"]: r for r in budget.listing()}
    assert rows.keys() == {"write", "read"}
    # what is left of the token's schedule for others: under one batch of each
    assert rows["write"]["seconds_ahead"] < 10 * SHARED_WINDOW_S / 50 + 0.05
    assert rows["read"]["seconds_ahead"] < 2 * SHARED_WINDOW_S / 10 + 0.05
    assert all(r["token"].startswith(fingerprint(TOKEN) + "@") for r in rows.values())
    client.close()


def bursts(budget: LedgerBudget, limiters: int, callers: int, **options: Any) -> tuple[list[float], list]:
    """``limiters`` limiters on one schedule, each on its own event loop (as separate processes would), each
    with ``callers`` callers at once: every start's time, and what the callers raised."""
    starts: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        lim = SharedLimiter(budget, "scope", "write", 50, window=SHARED_WINDOW_S, **options)

        async def one() -> None:
            try:
                await lim.aacquire()
            except BaseException as e:
                with lock:
                    errors.append(e)
                return
            with lock:
                starts.append(time.monotonic())

        async def burst() -> None:
            await asyncio.gather(*(one() for _ in range(callers)))

        asyncio.run(burst())

    threads = [threading.Thread(target=run) for _ in range(limiters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return starts, errors


def test_two_limiters_on_one_schedule_keep_the_rate_together(budget: LedgerBudget) -> None:
    """Two limiters drawing from one schedule: their starts together keep the token's rate, where each alone
    would take all of it."""
    starts, errors = bursts(budget, 2, 30)
    assert errors == []
    assert len(starts) == 60
    assert max_in_window(starts) <= 50
    # 60 slots 21.2 ms apart span 1.25 s; two limiters each keeping 50/s alone would be done in 0.6 s
    assert max(starts) - min(starts) >= 59 * SHARED_WINDOW_S / 50 - 0.05


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best = j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_many_limiters_sharing_one_token_serve_every_caller_in_turn(budget: LedgerBudget) -> None:
    """Eight limiters on one schedule (eight processes' runs sharing a token), 40 callers each, 50 slots a
    second: 320 callers need ~6.8 s of slots, more than the 2 s timeout. The source answers every reservation,
    so nobody may be told it cannot be reached; every caller gets a slot, the rate kept. (Callers that gave up
    their place after ``ahead`` and queued again at the back starved and timed out: the fan-out's first pass
    lost 5,232 records' writes that way.)"""
    starts, errors = bursts(budget, 8, 40, timeout=2.0)
    assert errors == []
    assert len(starts) == 320
    assert max_in_window(starts) <= 50


def test_callers_waiting_their_turn_do_not_each_poll(budget: LedgerBudget, monkeypatch: Any) -> None:
    """The same eight limiters x 40 callers: only the first in line wakes every ``ahead`` to keep the
    reservations coming; the rest wait for their slot. (Each caller woke every 0.42 s: in the fan-out, 8 runs on
    8 shared tokens kept ~400 callers per process waiting, ~950 wake-ups a second each doing nothing.)"""
    kicks = [0]
    kick = SharedLimiter._kick

    def counted(self: SharedLimiter) -> None:
        kicks[0] += 1
        kick(self)

    monkeypatch.setattr(SharedLimiter, "_kick", counted)
    started = time.monotonic()
    starts, errors = bursts(budget, 8, 40)
    elapsed = time.monotonic() - started
    assert errors == [] and len(starts) == 320
    assert max_in_window(starts) <= 50
    ahead = max(0.25, 2 * 10 * SHARED_WINDOW_S / 50)
    # the first in line of each limiter: one kick per ``ahead``; those behind it: a few over the whole wait
    assert kicks[0] <= 8 * elapsed / ahead + 320, f"{kicks[0]} kicks in {elapsed:.1f} s"


def test_a_source_that_stops_answering_still_fails_closed(tmp_path: Path) -> None:
    class Silent:
        name = "silent"

        def reserve(self, token: str, kind: str, count: int, interval: float) -> list[float]:
            time.sleep(5)  # never answers within the caller's timeout
            return []

    lim = SharedLimiter(Silent(), "scope", "write", 50, window=SHARED_WINDOW_S, timeout=0.5)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(Exception, match="could not be reached"):
        asyncio.run(lim.aacquire())
    assert time.monotonic() - started < 2.0
