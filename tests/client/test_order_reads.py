"""Orders read back by id (``ids[in]``, at most 100 a request) and by what changed in Trackstar's copy, against
the sandbox: every id found once, batches the server accepts, pages followed, and never more than 10 reads/s."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.client.test_client import ORDER, WMS
from tests.client.test_ratelimit import max_in_window
from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.client.order_reads import (
    iter_orders_by_ids,
    iter_orders_changed_since,
    trackstar_updated_at,
)


def _seed(sb, n: int) -> list[dict]:
    with TrackstarClient(sb.api_key, sb.base_url, write_rate=None) as c:
        return [
            c.write("POST", "/wms/orders", {**ORDER, "order_number": f"R-{i}"}, WMS).data or {}
            for i in range(n)
        ]


def test_by_ids_in_batches_of_100_within_10_reads_a_second(sandbox_factory) -> None:
    sb = sandbox_factory(write_rate=None, read_rate=10)
    made = _seed(sb, 250)
    ids = [o["id"] for o in made]
    # the 250 real ids (each twice) and 1,250 Trackstar does not hold: 1,500 distinct, 15 requests of 100
    wanted = ids + ids + [f"ord_gone{i}" for i in range(1250)]
    with TrackstarClient(sb.api_key, sb.base_url) as c:
        got = list(iter_orders_by_ids(c, WMS, wanted))
    assert sorted(o["id"] for o in got) == sorted(ids)
    reads = sb.arrivals(WMS, "read")
    assert len(reads) == 15  # none refused, none retried
    assert all(ok for _, ok in reads)
    assert max_in_window([t for t, _ in reads]) <= 10


def test_by_ids_stays_under_the_budget_when_it_is_small(sandbox_factory) -> None:
    sb = sandbox_factory(write_rate=None, read_rate=4)
    made = _seed(sb, 30)
    with TrackstarClient(sb.api_key, sb.base_url, read_rate=4) as c:
        got = list(iter_orders_by_ids(c, WMS, [o["id"] for o in made], batch_size=3))
    assert len(got) == 30
    reads = sb.arrivals(WMS, "read")
    assert len(reads) == 10 and all(ok for _, ok in reads)
    assert max_in_window([t for t, _ in reads]) <= 4


def test_changed_since_follows_pages_and_reads_only_what_changed(sandbox_factory) -> None:
    sb = sandbox_factory(write_rate=None, read_rate=None, seconds_per_step=100)
    made = _seed(sb, 5)
    mark = max(trackstar_updated_at(o) for o in made)
    assert mark is not None
    with TrackstarClient(sb.api_key, sb.base_url) as c:
        assert list(iter_orders_changed_since(c, WMS, mark)) == []
        before_last = trackstar_updated_at(made[-2])
        assert before_last is not None
        assert list(iter_orders_changed_since(c, WMS, before_last, until=mark)) == made[-1:]
        sb.advance_clock(150)
        changed = list(iter_orders_changed_since(c, WMS, mark, limit=2))
        assert [o["id"] for o in changed] == [o["id"] for o in made]  # three pages of 2, 2, 1
        assert {o["status"] for o in changed} == {"confirmed"}
        early = datetime(2000, 1, 1, tzinfo=UTC)
        assert list(iter_orders_changed_since(c, WMS, early, until=early)) == []
    assert len(sb.arrivals(WMS, "read")) == 1 + 3 + 1 + 1


def test_bad_batch_size_is_refused_before_any_request(sandbox) -> None:
    import pytest

    with TrackstarClient(sandbox.api_key, sandbox.base_url) as c, pytest.raises(ValueError, match="100"):
        list(iter_orders_by_ids(c, WMS, ["a"], batch_size=101))
    assert sandbox.arrivals(WMS, "read") == []
