"""Statuses back to the warehouse: a sync's ``order_statuses`` asset against the sandbox with orders moving
through statuses, in a real Dagster instance, into a real DuckDB table."""

from __future__ import annotations

import time

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from tests.client.test_ratelimit import max_in_window
from tests.dagster.test_sync import MAPPING, rows
from trackstar_dagster import (
    TrackstarConnection,
    TrackstarResource,
    TrackstarSync,
    build_trackstar_schema_assets,
    build_trackstar_sync_assets,
)
from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.sql_statuses import sql_statuses_sink
from trackstar_dagster.sync import trackstar_io_manager_resources
from trackstar_dagster.sync.status_config import StatusReadBack

TOKEN = "sandbox-token-wms"
STEP = 100.0  # seconds of Trackstar's clock per status step
STATUSES = dg.AssetKey(["s", "order_statuses"])


@pytest.fixture
def sb(sandbox_factory):
    return sandbox_factory(write_rate=None, seconds_per_step=STEP)


@pytest.fixture
def warehouse(tmp_path):
    return str(tmp_path / "warehouse.duckdb")


@pytest.fixture
def resources(sb, tmp_path, warehouse):
    return {
        "trackstar": TrackstarResource(
            api_key=sb.api_key,
            base_url=sb.base_url,
            state_dir=str(tmp_path / "state"),
            connections=[
                TrackstarConnection(name="acme", access_token=TOKEN, integration_name="wms_sandbox")
            ],
        ),
        "duckdb": DuckDBResource(database=warehouse),
        **trackstar_io_manager_resources(str(tmp_path / "io")),
    }


def make_sync(n: int, overlap: float = 0.0) -> TrackstarSync:
    frame = rows(n)
    return TrackstarSync(
        name="s",
        mapping=MAPPING,
        load_rows=lambda context, window: frame,
        extra_resource_keys=frozenset({"duckdb"}),
        read_back_statuses=StatusReadBack(
            sink=sql_statuses_sink("order_statuses", "duckdb"), overlap_seconds=overlap
        ),
    )


def write_and_read(sync, instance, resources):
    """The whole sync (payloads, write, then the statuses after the write) in one run."""
    assets = [*build_trackstar_schema_assets(), *build_trackstar_sync_assets(sync)]
    return dg.materialize(assets, instance=instance, resources=resources)


def read_statuses(sync, instance, resources):
    assets = [*build_trackstar_schema_assets(), *build_trackstar_sync_assets(sync)]
    return dg.materialize(assets, instance=instance, resources=resources, selection=[STATUSES])


def table(warehouse) -> list[tuple]:
    with duckdb.connect(warehouse, read_only=True) as con:
        return con.execute(
            "SELECT key, trackstar_id, status, shipments, tracking_numbers, trackstar_updated_date "
            "FROM order_statuses ORDER BY key"
        ).fetchall()


def reads_since(sb, t0: float) -> int:
    return sum(1 for t, _ in sb.arrivals(TOKEN, "read") if t >= t0)


def test_statuses_follow_the_orders_incrementally_into_one_table(sb, instance, resources, warehouse):
    sync = make_sync(12)
    first = write_and_read(sync, instance, resources)
    assert first.success
    assert len(sb.records("orders", token=TOKEN)) == 12
    got = table(warehouse)
    assert len(got) == 12 and {r[2] for r in got} == {"open"}
    meta = first.asset_materializations_for_node("s__order_statuses")[0].metadata
    assert meta["reads"].data["acme"]["mode"] == "ids"
    assert meta["status_counts"].data == {"open": 12}
    assert "SYNC-0000" in meta["preview"].value

    # an order made outside this sync on the same connection: never in the table
    with TrackstarClient(sb.api_key, sb.base_url) as c:
        other = sb.records("orders", token=TOKEN)[0]
        body = {k: other[k] for k in ("ship_to_address", "line_items")}
        c.write(
            "POST", "/wms/orders", {**body, "order_number": "NOT-OURS", "trackstar_tags": ["other"]}, TOKEN
        )

    sb.advance_clock(STEP * 5 + 1)  # every order fulfilled, shipped
    t0 = time.time()
    second = read_statuses(sync, instance, resources)
    assert second.success
    got = table(warehouse)
    assert len(got) == 12  # upserted: no duplicate rows
    assert {r[2] for r in got} == {"fulfilled"}
    assert all(r[3] == 1 and r[4] and r[4].startswith("1ZSBX") for r in got)
    assert "NOT-OURS" not in {r[0] for r in got}
    meta = second.asset_materializations_for_node("s__order_statuses")[0].metadata
    assert meta["reads"].data["acme"] == {
        "mode": "trackstar_updated_date",
        "orders_read": 13,
        "read_by_id": 0,
        "rows": 12,
    }
    assert meta["shipped_orders"].value == 12
    assert reads_since(sb, t0) == 1  # one page: only what changed since the mark

    t1 = time.time()
    third = read_statuses(sync, instance, resources)  # nothing moved since
    assert third.success
    meta = third.asset_materializations_for_node("s__order_statuses")[0].metadata
    assert meta["reads"].data["acme"]["orders_read"] == 0
    assert meta["dagster/row_count"].value == 0
    assert reads_since(sb, t1) == 1
    assert len(table(warehouse)) == 12


def test_only_the_orders_that_changed_are_read(sb, instance, resources, warehouse):
    sync = make_sync(6)
    assert write_and_read(sync, instance, resources).success
    orders = sb.records("orders", token=TOKEN)
    sb.advance_clock(STEP / 2)
    with TrackstarClient(sb.api_key, sb.base_url) as c:  # two cancelled: their clock restarts now
        for o in orders[:2]:
            c.write("PUT", f"/wms/orders/{o['id']}/cancel", None, TOKEN)
    second = read_statuses(sync, instance, resources)
    meta = second.asset_materializations_for_node("s__order_statuses")[0].metadata
    assert meta["reads"].data["acme"]["orders_read"] == 2
    assert meta["status_counts"].data == {"cancelled": 2}
    sb.advance_clock(STEP / 2 + 1)  # the four others step to confirmed; the cancelled stay
    third = read_statuses(sync, instance, resources)
    meta = third.asset_materializations_for_node("s__order_statuses")[0].metadata
    assert meta["reads"].data["acme"]["orders_read"] == 4
    assert meta["status_counts"].data == {"confirmed": 4}
    got = {r[1]: r[2] for r in table(warehouse)}
    assert sorted(got.values()) == [
        "cancelled",
        "cancelled",
        "confirmed",
        "confirmed",
        "confirmed",
        "confirmed",
    ]


def test_overlap_rereads_replace_rows_and_do_not_duplicate(sb, instance, resources, warehouse):
    sync = make_sync(5, overlap=3600.0)  # an hour of overlap: every read re-reads everything
    assert write_and_read(sync, instance, resources).success
    for _ in range(2):
        sb.advance_clock(STEP + 1)
        assert read_statuses(sync, instance, resources).success
    got = table(warehouse)
    assert len(got) == 5 and {r[2] for r in got} == {"processing"}
    with duckdb.connect(warehouse, read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT trackstar_id) FROM order_statuses").fetchone() == (5,)


def test_over_a_hundred_orders_read_by_id_in_batches_within_the_read_budget(
    sb, instance, resources, warehouse
):
    sync = make_sync(230)
    assert write_and_read(sync, instance, resources).success
    assert len(table(warehouse)) == 230
    # write-info (1) and the first read: 230 ids in 3 requests of <= 100, every one admitted
    reads = sb.arrivals(TOKEN, "read")
    assert all(ok for _, ok in reads)
    assert max_in_window([t for t, _ in reads]) <= 10
    assert sum(1 for _ in reads) == 1 + 3  # write-info, then 100 + 100 + 30 ids


def test_read_back_is_for_orders_only():
    mapping = MAPPING.model_copy(update={"action": "create_product"})
    with pytest.raises(ConfigError, match="orders"):
        TrackstarSync(name="p", mapping=mapping, load_rows=lambda c, w: None, read_back_statuses=True)


def test_off_by_default_no_statuses_asset():
    sync = TrackstarSync(name="s", mapping=MAPPING, load_rows=lambda c, w: None)
    keys = {k for a in build_trackstar_sync_assets(sync) for k in a.keys}
    assert STATUSES not in keys


def test_an_order_whose_ledger_row_came_after_the_first_read_is_still_read(
    sb, instance, resources, warehouse
):
    """A ledger row committed after a read (a slow flush, a rebuilt ledger) for an order that then never changes:
    the date query cannot see it (its trackstar_updated_date is before the mark); the ledger's own clock can."""
    sync = make_sync(5)
    assert write_and_read(sync, instance, resources).success  # write, and a first read of all five
    trackstar = resources["trackstar"]
    with trackstar.ledger() as ledger:  # two ledger rows lost ...
        assert ledger.forget("acme", keys=["SYNC-0000", "SYNC-0001"], namespace="s") == 2
    with duckdb.connect(warehouse) as con:  # ... and the table wiped: the asset's history says "read"
        con.execute("DELETE FROM order_statuses")
    assert read_statuses(sync, instance, resources).success
    assert len(table(warehouse)) == 0  # nothing changed in Trackstar: nothing read
    # the next sync run finds the two in Trackstar by their tags and writes their ledger rows again (no write)
    assert dg.materialize(
        [*build_trackstar_schema_assets(), *build_trackstar_sync_assets(sync)],
        instance=instance,
        resources=resources,
        selection=[
            dg.AssetKey(["s", "payloads"]),
            dg.AssetKey(["s", "rejects"]),
            dg.AssetKey(["s", "write_results"]),
        ],
    ).success
    assert len(sb.records("orders", token=TOKEN)) == 5
    assert read_statuses(sync, instance, resources).success
    assert [r[0] for r in table(warehouse)] == ["SYNC-0000", "SYNC-0001"]


def test_a_connection_no_longer_configured_is_skipped_and_keeps_its_mark(sb, instance, resources, warehouse):
    sync = make_sync(3)
    assert write_and_read(sync, instance, resources).success
    ts = resources["trackstar"]
    other = TrackstarConnection(
        name="globex", access_token="sandbox-token-shiphero", integration_name="shiphero"
    )
    moved = TrackstarResource(
        api_key=ts.api_key, base_url=ts.base_url, state_dir=ts.state_dir, connections=[other]
    )
    gone = {**resources, "trackstar": moved}
    result = read_statuses(sync, instance, gone)
    assert result.success
    meta = result.asset_materializations_for_node("s__order_statuses")[0].metadata
    assert meta["reads"].data == {}
    assert set(meta["high_water_marks"].data) == {"acme"}  # kept for when it comes back
    assert len(table(warehouse)) == 3


def test_a_lost_table_is_filled_again_by_a_full_refresh(sb, instance, resources, warehouse):
    """The table dropped (a lost file): the marks live in Dagster, so the next read fetches only what changed;
    ``full_refresh`` reads every order the sync wrote again, by id."""
    sync = make_sync(8)
    assert write_and_read(sync, instance, resources).success
    with duckdb.connect(warehouse) as con:
        con.execute("DROP TABLE order_statuses")
    assert read_statuses(sync, instance, resources).success
    with duckdb.connect(warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM order_statuses").fetchone() == (0,)  # nothing changed since
    assets = [*build_trackstar_schema_assets(), *build_trackstar_sync_assets(sync)]
    config = {"ops": {"s__order_statuses": {"config": {"full_refresh": True}}}}
    result = dg.materialize(
        assets, instance=instance, resources=resources, selection=[STATUSES], run_config=config
    )
    assert result.success
    meta = result.asset_materializations_for_node("s__order_statuses")[0].metadata
    assert meta["reads"].data["acme"]["mode"] == "ids"
    assert len(table(warehouse)) == 8
    assert read_statuses(sync, instance, resources).success  # incremental again from the new mark
    assert len(table(warehouse)) == 8
