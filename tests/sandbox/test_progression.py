"""Orders moving through statuses over time (``seconds_per_step``), on Trackstar's clock, and the read filters
an incremental status read relies on (``trackstar_updated_date``, ``ids[in]`` at most 100)."""

from __future__ import annotations

from tests.sandbox.helpers import SANDBOX_ORDER, body, client


def _orders(c, n: int, tag: str = "mine") -> list[dict]:
    out = []
    for i in range(n):
        r = c.post("/wms/orders", json=body(SANDBOX_ORDER, order_number=f"P-{tag}-{i}", trackstar_tags=[tag]))
        assert r.status_code == 200, r.text
        out.append(r.json()["data"])
    return out


def _get(c, **params) -> list[dict]:
    r = c.get("/wms/orders", params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_progression_is_off_by_default(sandbox_factory) -> None:
    sb = sandbox_factory(read_rate=None, write_rate=None)
    with client(sb) as c:
        made = _orders(c, 2)
        sb.advance_clock(10_000)
        assert [o["status"] for o in _get(c)] == ["open", "open"]
        assert all(not o.get("shipments") for o in _get(c))
        assert _get(c)[0]["trackstar_updated_date"] == made[0]["trackstar_updated_date"]


def test_orders_step_through_statuses_on_trackstar_clock_only(sandbox_factory) -> None:
    sb = sandbox_factory(read_rate=None, write_rate=None, seconds_per_step=100)
    with client(sb) as c:
        made = _orders(c, 3)
        assert {o["status"] for o in _get(c)} == {"open"}
        sb.advance_clock(150)
        now = _get(c)
        assert {o["status"] for o in now} == {"confirmed"}
        assert now[0]["updated_date"] == made[0]["updated_date"]  # the source system's clock: untouched
        assert now[0]["trackstar_updated_date"] > made[0]["trackstar_updated_date"]
        one = c.get(f"/wms/orders/{made[0]['id']}").json()["data"]
        assert one["status"] == "confirmed"
        sb.advance_clock(400)  # 550 s: five steps, the last one
        done = _get(c)
        assert {o["status"] for o in done} == {"fulfilled"}
        ships = [o["shipments"] for o in done]
        assert all(len(s) == 1 and s[0]["tracking_number"] for s in ships)
        assert len({s[0]["tracking_number"] for s in ships}) == 3  # one per order
        sb.advance_clock(1000)  # nothing after the last step: the same record, the same clock
        assert _get(c) == done
        assert sb.records("orders", token="sandbox-token-wms")[0]["status"] == "fulfilled"


def test_cancelled_orders_stop_and_updates_restart_the_clock(sandbox_factory) -> None:
    sb = sandbox_factory(read_rate=None, write_rate=None, seconds_per_step=100)
    with client(sb) as c:
        a, b = _orders(c, 2)
        sb.advance_clock(250)  # both processing
        assert c.put(f"/wms/orders/{a['id']}/cancel").status_code == 200
        sb.advance_clock(1000)
        got = {o["id"]: o for o in _get(c)}
        assert got[a["id"]]["status"] == "cancelled"
        assert got[b["id"]]["status"] == "fulfilled"


def test_trackstar_updated_date_filter_reads_only_what_changed(sandbox_factory) -> None:
    sb = sandbox_factory(read_rate=None, write_rate=None, seconds_per_step=100)
    with client(sb) as c:
        first = _orders(c, 3)
        sb.advance_clock(50)
        later = _orders(c, 2)  # 50 s younger: they step 50 s after the first three
        mark = max(o["trackstar_updated_date"] for o in _get(c))
        assert _get(c, **{"trackstar_updated_date[gt]": mark}) == []
        sb.advance_clock(60)  # the first three stepped at +100; the later ones not yet (+150)
        changed = _get(c, **{"trackstar_updated_date[gt]": mark})
        assert [o["id"] for o in changed] == [o["id"] for o in first]
        sb.advance_clock(50)
        assert len(_get(c, **{"trackstar_updated_date[gt]": mark})) == 5
        assert {o["id"] for o in _get(c, **{"trackstar_updated_date[lte]": mark})} == set()
        assert later


def test_ids_in_takes_at_most_100_and_ignores_other_filters(sandbox_factory) -> None:
    sb = sandbox_factory(read_rate=None, write_rate=None)
    with client(sb) as c:
        made = _orders(c, 2)
        ids = [o["id"] for o in made]
        assert len(_get(c, **{"ids[in]": ",".join(ids), "status": "cancelled"})) == 2
        many = ",".join(ids + [f"ord_x{i}" for i in range(99)])
        r = c.get("/wms/orders", params={"ids[in]": many})
        assert r.status_code == 422
        assert "100" in r.text


def test_a_subprocess_sandbox_moves_its_orders_through_the_admin_routes() -> None:
    from trackstar_dagster.sandbox.server import run_sandbox

    with (
        run_sandbox(subprocess=True, read_rate=None, write_rate=None, seconds_per_step=100) as sb,
        client(sb) as c,
    ):
        _orders(c, 1)
        sb.advance_clock(250)
        assert _get(c)[0]["status"] == "processing"
        sb.set_progression(None)  # orders keep what they reached
        sb.advance_clock(1000)
        assert _get(c)[0]["status"] == "processing"


def test_turned_on_while_running_orders_start_moving_then(sandbox_factory) -> None:
    sb = sandbox_factory(read_rate=None, write_rate=None)
    with client(sb) as c:
        _orders(c, 1)
        sb.advance_clock(1000)  # made long ago, standing still
        sb.set_progression(100)
        assert _get(c)[0]["status"] == "open"
        sb.advance_clock(150)
        assert _get(c)[0]["status"] == "confirmed"
