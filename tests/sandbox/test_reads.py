"""List endpoints: pagination over several pages and the filters."""

from __future__ import annotations

import time

from tests.sandbox.helpers import SANDBOX_ORDER, SHIPHERO, body, client


def _seed(c, n: int) -> list[dict]:
    out = []
    for i in range(n):
        tags = [f"batch-{i % 2}", {"source": "dagster" if i % 3 == 0 else "manual"}]
        r = c.post(
            "/wms/orders",
            json=body(SANDBOX_ORDER, order_number=f"SO-{i}", reference_id=f"ref-{i}", trackstar_tags=tags),
        )
        assert r.status_code == 200, r.text
        out.append(r.json()["data"])
    return out


def test_pagination_over_three_pages(sandbox_factory) -> None:
    sb = sandbox_factory(read_rate=None, write_rate=None)
    with client(sb) as c:
        made = _seed(c, 7)
        seen, token, pages = [], None, 0
        while True:
            params = {"limit": 3, **({"page_token": token} if token else {})}
            page = c.get("/wms/orders", params=params).json()
            pages += 1
            assert page["total_count"] == len(page["data"]) <= 3
            seen += [r["id"] for r in page["data"]]
            token = page["next_token"]
            if token is None:
                break
        assert pages == 3 and seen == [r["id"] for r in made]
        full = c.get("/wms/orders").json()
        assert full["total_count"] == 7 and full["next_token"] is None
        assert c.get("/wms/orders", params={"page_token": "garbage!"}).status_code == 422
        assert c.get("/wms/orders", params={"limit": "zero"}).status_code == 422


def test_filters(sandbox_factory) -> None:
    sb = sandbox_factory(read_rate=None, write_rate=None)
    with client(sb) as c:
        before = time.time()
        made = _seed(c, 6)

        def ids(**params) -> list[str]:
            r = c.get("/wms/orders", params=params)
            assert r.status_code == 200, r.text
            return [x["id"] for x in r.json()["data"]]

        assert ids(reference_id="ref-2") == [made[2]["id"]]
        assert ids(**{"order_number[eq]": "SO-3"}) == [made[3]["id"]]
        assert ids(**{"order_number[in]": "SO-1,SO-4"}) == [made[1]["id"], made[4]["id"]]
        assert ids(**{"trackstar_tags[contains]": "batch-1"}) == [made[i]["id"] for i in (1, 3, 5)]
        assert ids(**{"trackstar_tags[contains]": "source:dagster"}) == [made[i]["id"] for i in (0, 3)]
        assert ids(**{"ids[in]": f"{made[0]['id']},{made[5]['id']}", "reference_id": "ignored"}) == [
            made[0]["id"],
            made[5]["id"],
        ]
        cut = made[3]["trackstar_created_date"]
        assert ids(**{"trackstar_created_date[gte]": cut}) == [made[i]["id"] for i in (3, 4, 5)]
        assert ids(**{"created_date[lt]": cut}) == [made[i]["id"] for i in (0, 1, 2)]
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 5))
        assert len(ids(**{"created_date[gte]": start, "created_date[lte]": "2999-01-01T00:00:00Z"})) == 6
        assert c.get("/wms/orders", params={"order_number[bogus]": "x"}).status_code == 422
        assert c.get("/wms/orders", params={"created_date[gte]": "yesterday"}).status_code == 422
        assert c.get("/wms/orders/nope").status_code == 404
    with client(sb, token=SHIPHERO) as c:  # records are per connection
        assert c.get("/wms/orders").json()["data"] == []
