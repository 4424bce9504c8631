"""Per-token rate limits with x-ratelimit-* headers and 429 + retry-after."""

from __future__ import annotations

import time

from tests.sandbox.helpers import SANDBOX_ORDER, SHIPHERO, client
from trackstar_dagster.sandbox.ratelimits import SlidingWindow


def test_read_limit_429_and_headers(sandbox_factory) -> None:
    sb = sandbox_factory(read_rate=3)
    with client(sb) as c:
        answers = [c.get("/wms/orders") for _ in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
        assert all(r.headers["x-ratelimit-limit"] == "3" for r in answers)
        assert int(answers[0].headers["x-ratelimit-reset"]) >= int(time.time())
        over = answers[-1]
        assert over.json() == {"error": "429 Too Many Requests", "origin": "trackstar"}
        assert over.headers["retry-after"] == "1"  # the oldest of the 3 frees its slot within 1 s
        assert c.post("/wms/orders", json=SANDBOX_ORDER).status_code == 200  # writes have their own budget
    with client(sb, token=SHIPHERO) as c:  # and each token its own
        assert c.get("/wms/orders").status_code == 200
    with client(sb) as c:
        time.sleep(1.05)
        assert c.get("/wms/orders").status_code == 200


def test_write_limit_and_unlimited(sandbox_factory) -> None:
    sb = sandbox_factory(write_rate=2)
    with client(sb) as c:
        codes = [c.post("/wms/products", json={"sku": f"s{i}", "name": "n"}).status_code for i in range(3)]
        assert codes == [200, 200, 429]
        sb.configure(write_rate=None)
        codes = [c.post("/wms/products", json={"sku": f"t{i}", "name": "n"}).status_code for i in range(5)]
        assert codes == [200] * 5
        assert "x-ratelimit-limit" not in c.post("/wms/products", json={"sku": "u", "name": "n"}).headers


def test_sliding_window_never_admits_more_than_rate_per_window() -> None:
    w = SlidingWindow(5, 1.0)
    admitted = [t / 100 for t in range(300) if w.check(t / 100).allowed]
    assert len(admitted) == 15  # and no fewer: the whole budget of each of the three windows is used
    for i, t in enumerate(admitted):
        assert sum(1 for u in admitted[i:] if u < t + 1.0) <= 5
