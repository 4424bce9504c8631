"""How many records a connection keeps in flight: its rate times its latency (Little's law), not a fixed 64."""

from __future__ import annotations

from typing import Any

import pytest

from tests.writer import NS, WMS, WMS_TOKEN, assert_exactly_once, orders
from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.client.ratelimit import RateLimiters
from trackstar_dagster.sandbox.server import run_sandbox
from trackstar_dagster.writer import lanes, write_payloads
from trackstar_dagster.writer.lanes import InFlight
from trackstar_dagster.writer.ledger import Ledger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(lanes.time, "monotonic", clock)
    return clock


def feed(window: InFlight, clock: Clock, latencies: list[float], per_s: int = 50) -> None:
    """``latencies`` answered at ``per_s`` answers a second."""
    for i, latency in enumerate(latencies):
        clock.now += 1 / per_s if i else 0.0
        window.observe(latency)


def test_in_flight_is_rate_times_latency_with_headroom(clock: Clock) -> None:
    window = InFlight(50.0, 256)
    feed(window, clock, [0.5] * 100)
    assert window.target == 52  # 50/s x 0.5 s x 2 + 2
    feed(window, clock, [2.0] * 600)  # the WMS slows down for every request, for 12 s
    assert window.target == 202  # the old fixed 64 allowed 32 writes/s at 2 s
    feed(window, clock, [0.01] * 600)
    assert window.target == 4  # fast: a few are enough (the floor)
    feed(window, clock, [30.0] * 600)
    assert window.target == 256  # never above the cap


def test_answers_slowed_by_queueing_do_not_grow_the_window(clock: Clock) -> None:
    """Overload (here or at the server) makes answers slow because requests queue; sizing by those
    latencies would let the queue grow without bound. The lowest latency of the last seconds stays put."""
    window = InFlight(50.0, 256)
    feed(window, clock, [0.4 + (i % 10) * 0.5 for i in range(500)])  # rising to 4.9 s, some still fast
    assert window.target == 42


def test_no_rate_or_a_fixed_concurrency_is_the_cap(clock: Clock) -> None:
    window = InFlight(None, 8)
    feed(window, clock, [3.0] * 100)
    assert window.target == 8


class PeakClient:
    """Wraps a client; records the most writes it had on their way at once."""

    def __init__(self, client: TrackstarClient) -> None:
        self.client = client
        self.open = 0
        self.peak = 0

    @property
    def write_rate(self) -> float | None:
        return self.client.write_rate

    async def awrite(self, *args: Any, **kwargs: Any) -> Any:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            return await self.client.awrite(*args, **kwargs)
        finally:
            self.open -= 1

    async def alist_records(self, *args: Any, **kwargs: Any) -> Any:
        return await self.client.alist_records(*args, **kwargs)

    async def aclose(self) -> None:
        await self.client.aclose()


def test_a_slow_wms_gets_more_in_flight_and_every_order_once(tmp_path: Any) -> None:
    """At 2 s a write, 50 writes/s needs ~100 in flight: more than the old fixed 64."""
    RateLimiters.clear()
    with run_sandbox(latency=2.0, write_rate=50.0, read_rate=50.0) as sb:
        client = PeakClient(
            TrackstarClient(sb.api_key, sb.base_url, timeout=10.0, write_rate=50.0, read_rate=50.0)
        )
        payloads = orders(400)
        with Ledger(tmp_path / "ledger.sqlite") as ledger:
            report = write_payloads(payloads, client, {WMS: WMS_TOKEN}, ledger, namespace=NS)
        assert report.counts["created"] == 400
        assert client.peak > 64
        assert client.peak <= 150  # the cap (the client's pool)
        assert_exactly_once(sb, payloads)
    RateLimiters.clear()
