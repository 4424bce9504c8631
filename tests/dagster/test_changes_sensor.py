"""Late and changed rows: the changes sensor, on a real Dagster instance, a real sandbox and a DuckDB warehouse.

Days are written; then rows arrive late on one day and an order of another day changes (its ``updated_at``
bumped). The sensor must ask for exactly those partitions, and the runs it asks for must create the late order
and update (``upsert``) or report (``create_only``) the changed one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import date, timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster_duckdb import DuckDBResource

from tests.dagster.test_example_project import _run_backfill, load_example_defs, materialize_schemas
from tests.dagster.test_example_project import example_env as example_env  # the fixture
from tests.dagster.test_sync import ORDER_FIELDS, order_line
from trackstar_dagster import MappingConfig, TrackstarConnection, TrackstarResource, TrackstarSync
from trackstar_dagster.changes import ChangesSensor, Fingerprint, ProbeRequest, fingerprints_of_groups
from trackstar_dagster.sql import sql_changes_probe, sql_row_loader
from trackstar_dagster.sync import add_connection_partitions, trackstar_partitions
from trackstar_dagster.sync.assets import resolve_targets
from trackstar_dagster.sync.changes_sensor import RANGE_END, RANGE_START

START = date(2026, 11, 1)
DAYS = 5
TOKENS = {"conn_a": "tok-a", "conn_b": "tok-b"}
COLUMNS = ["order_id", "customer", "order_date", "updated_at", "name", "street", "city", "state", "zip"]
COLUMNS += ["country", "product", "qty"]


def day(i: int) -> str:
    return (START + timedelta(days=i)).isoformat()


def order(order_id: str, i: int, customer: str = "alpha", city: str = "Reno") -> list[dict]:
    when = pd.Timestamp(day(i)) + pd.Timedelta(hours=10)
    return [
        order_line(order_id, line, customer=customer, order_date=when, updated_at=when, city=city)
        for line in range(2)
    ]


def first_rows(customers=("alpha",)) -> pd.DataFrame:
    out = []
    for i in range(DAYS):
        for c in customers:
            for n in range(3):
                out += order(f"{c[:2].upper()}-{i}-{n}", i, c)
    return pd.DataFrame(out)[COLUMNS]


def make_warehouse(path: str, frame: pd.DataFrame) -> str:
    con = duckdb.connect(path)
    con.register("f", frame)
    con.execute("CREATE TABLE order_lines AS SELECT * FROM f")
    con.close()
    return path


def sql(path: str, statement: str, params: list | None = None) -> None:
    con = duckdb.connect(path)
    con.execute(statement, params or [])
    con.close()


def add_late_order(path: str, order_id: str, i: int, customer: str = "alpha") -> None:
    con = duckdb.connect(path)
    con.register("f", pd.DataFrame(order(order_id, i, customer))[COLUMNS])
    con.execute("INSERT INTO order_lines SELECT * FROM f")
    con.close()


def change_order(path: str, order_id: str, city: str = "Sparks") -> None:
    sql(
        path,
        "UPDATE order_lines SET city = ?, updated_at = updated_at + INTERVAL 1 DAY WHERE order_id = ?",
        [city, order_id],
    )


SINGLE = MappingConfig.model_validate(
    {"action": "create_order", "key": "order_id", "connection": "conn_a", "fields": ORDER_FIELDS}
)
BY_CUSTOMER = MappingConfig.model_validate(
    {
        "action": "create_order",
        "key": "order_id",
        "connection_column": "customer",
        "connection_values": {"alpha": "conn_a", "beta": "conn_b"},
        "fields": ORDER_FIELDS,
    }
)


@pytest.fixture
def sandbox2(sandbox_factory):
    return sandbox_factory(connections={tok: {"integration_name": "wms_sandbox"} for tok in TOKENS.values()})


def trackstar(sandbox, tmp_path, tokens: dict[str, str] | None = None) -> TrackstarResource:
    return TrackstarResource(
        api_key=sandbox.api_key,
        base_url=sandbox.base_url,
        state_dir=str(tmp_path / "state"),
        connections=[
            TrackstarConnection(name=n, access_token=t, integration_name="wms_sandbox")
            for n, t in {**TOKENS, **(tokens or {})}.items()
        ],
    )


def make_sync(mapping=SINGLE, *, loader=None, probe=None, **kwargs) -> TrackstarSync:
    kwargs.setdefault("partitions", trackstar_partitions(START, end_offset=DAYS))
    return TrackstarSync(
        name="late",
        mapping=mapping,
        load_rows=loader or sql_row_loader("order_lines", "order_date", "duckdb", mapping),
        date_column="order_date",
        extra_resource_keys=frozenset({"duckdb"}),
        changes_sensor=ChangesSensor(updated_column="updated_at", probe=probe),
        **kwargs,
    )


def defs_of(sync: TrackstarSync, ts: TrackstarResource, warehouse: str, tmp_path) -> dg.Definitions:
    return dg.Definitions.merge(
        sync.build_defs(trackstar=ts, io_manager_base_dir=str(tmp_path / "io")),
        dg.Definitions(resources={"duckdb": DuckDBResource(database=warehouse)}),
    )


def evaluate(defs: dg.Definitions, instance, cursor: str | None = None) -> list[dg.RunRequest]:
    """One tick of the sync's changes sensor (as the daemon would, with the definitions' resources)."""
    sensor = defs.resolve_sensor_def("late_changes_sensor")
    resources = {k: defs.resources[k] for k in sensor.required_resource_keys}
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
        result = sensor(ctx)
    if isinstance(result, dg.SkipReason):
        return []
    assert isinstance(result, dg.SensorResult)
    return list(result.run_requests or [])


def requested_keys(defs: dg.Definitions, requests: list[dg.RunRequest], instance) -> list[str]:
    """Every partition key the requests ask for (one key, or a range of keys each)."""
    pdef = defs.resolve_job_def("late_job").partitions_def
    out: list[str] = []
    for rr in requests:
        if rr.partition_key is not None:
            out.append(rr.partition_key)
            continue
        assert rr.partition_key_range is not None
        with partition_loading_context(dynamic_partitions_store=instance):
            out += pdef.get_partition_keys_in_range(rr.partition_key_range)
    return out


def run(defs: dg.Definitions, instance, requests: list[dg.RunRequest]) -> list[dg.ExecuteInProcessResult]:
    job = defs.resolve_job_def("late_job")
    return [
        job.execute_in_process(instance=instance, tags=rr.tags, partition_key=rr.partition_key)
        for rr in requests
    ]


def write_days(defs: dg.Definitions, instance, first: int, last: int) -> None:
    job = defs.resolve_job_def("late_job")
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": day(first),
            "dagster/asset_partition_range_end": day(last),
        },
    )
    assert result.success


def write_each(job: dg.JobDefinition, instance, days: Iterable[int]) -> None:
    """One run per (day, connection) partition of a day x connection sync, each a success."""
    for conn in ("conn_a", "conn_b"):
        for i in days:
            key = dg.MultiPartitionKey({"date": day(i), "connection": conn})
            assert job.execute_in_process(instance=instance, partition_key=key).success


def results_of(result: dg.ExecuteInProcessResult) -> pd.DataFrame:
    assert result.success
    return result.asset_value(dg.AssetKey(["late", "write_results"])).frame()


def orders(sandbox, conn: str = "conn_a") -> dict[str, dict]:
    return {o["order_number"]: o for o in sandbox.records("orders", token=TOKENS[conn])}


# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["upsert", "create_only"])
def test_late_and_changed_rows_are_asked_for_and_sent(sandbox2, instance, tmp_path, mode):
    warehouse = make_warehouse(str(tmp_path / "w.duckdb"), first_rows())
    sync = make_sync(mode=mode)
    defs = defs_of(sync, trackstar(sandbox2, tmp_path), warehouse, tmp_path)
    write_days(defs, instance, 0, 3)
    assert len(orders(sandbox2)) == 12
    assert evaluate(defs, instance) == []  # nothing changed since the write

    add_late_order(warehouse, "AL-1-late", 1)
    change_order(warehouse, "AL-3-2")
    requests = evaluate(defs, instance)
    assert sorted(requested_keys(defs, requests, instance)) == [day(1), day(3)]
    assert all(rr.run_key for rr in requests)  # the daemon skips a request it already made

    results = pd.concat([results_of(r) for r in run(defs, instance, requests)], ignore_index=True)
    status = dict(zip(results["key"], results["status"], strict=True))
    held = orders(sandbox2)
    assert status["AL-1-late"] == "created" and "AL-1-late" in held
    if mode == "upsert":
        assert status["AL-3-2"] == "updated"
        assert held["AL-3-2"]["ship_to_address"]["city"] == "Sparks"
    else:  # create_only: the changed order is reported, not written
        assert status["AL-3-2"] == "unchanged"
        changed = results.set_index("key").loc["AL-3-2"]
        assert bool(changed["body_changed"]) and "create_only" in str(changed["error"])
        assert held["AL-3-2"]["ship_to_address"]["city"] == "Reno"
    assert len(held) == 13
    others = results[~results["key"].isin(["AL-1-late", "AL-3-2"])]
    assert set(others["status"]) == {"unchanged"}

    # nothing changed since: nothing asked for, with the sensor's cursor or without it (a lost cursor)
    assert evaluate(defs, instance) == []
    assert evaluate(defs, instance, cursor="garbage") == []


def test_a_partition_never_written_is_not_asked_for(sandbox2, instance, tmp_path):
    warehouse = make_warehouse(str(tmp_path / "w.duckdb"), first_rows())
    defs = defs_of(make_sync(), trackstar(sandbox2, tmp_path), warehouse, tmp_path)
    assert evaluate(defs, instance) == []  # nothing written: schedules and backfills write days first
    write_days(defs, instance, 0, 1)
    add_late_order(warehouse, "AL-3-late", 3)  # day 3 was never written
    change_order(warehouse, "AL-4-0")  # nor day 4
    assert evaluate(defs, instance) == []


def test_a_change_during_a_run_is_asked_for_next(sandbox2, instance, tmp_path):
    """The fingerprint stored is the one of the rows the run loaded: a row changed after that is seen."""
    warehouse = make_warehouse(str(tmp_path / "w.duckdb"), first_rows())
    base = sql_row_loader("order_lines", "order_date", "duckdb", SINGLE)
    change_after_load = {"on": False}

    def loader(context, request):
        frame = base(context, request)
        if change_after_load["on"]:
            change_order(warehouse, "AL-2-1", city="Carson City")  # lands after the rows were read
            change_after_load["on"] = False
        return frame

    loader.takes_rows_request = True  # type: ignore[attr-defined]
    probe = sql_changes_probe("order_lines", "order_date", "duckdb", SINGLE)  # what the loader reads
    sync = make_sync(loader=loader, probe=probe, mode="upsert")
    defs = defs_of(sync, trackstar(sandbox2, tmp_path), warehouse, tmp_path)
    change_after_load["on"] = True
    write_days(defs, instance, 2, 2)
    assert orders(sandbox2)["AL-2-1"]["ship_to_address"]["city"] == "Reno"  # the run sent what it read
    requests = evaluate(defs, instance)
    assert requested_keys(defs, requests, instance) == [day(2)]
    run(defs, instance, requests)
    assert orders(sandbox2)["AL-2-1"]["ship_to_address"]["city"] == "Carson City"
    assert evaluate(defs, instance) == []


def test_a_dry_run_or_a_failed_write_does_not_hide_a_change(sandbox2, instance, tmp_path):
    """What counts is what was true at the last *write*: a dry run, or a run whose write step failed, loads the
    changed rows without sending them; the sensor still asks for the partition."""
    warehouse = make_warehouse(str(tmp_path / "w.duckdb"), first_rows())
    defs = defs_of(make_sync(mode="upsert"), trackstar(sandbox2, tmp_path), warehouse, tmp_path)
    write_days(defs, instance, 0, 2)
    change_order(warehouse, "AL-1-1")
    job = defs.resolve_job_def("late_job")
    dry = {"ops": {"late__write_results": {"config": {"dry_run": True}}}}
    assert job.execute_in_process(instance=instance, partition_key=day(1), run_config=dry).success
    assert requested_keys(defs, evaluate(defs, instance), instance) == [day(1)]
    sandbox2.configure(faults={"error_5xx": 1.0})
    failed = job.execute_in_process(instance=instance, partition_key=day(1), raise_on_error=False)
    assert not failed.success
    assert requested_keys(defs, evaluate(defs, instance), instance) == [day(1)]
    sandbox2.configure(faults={"error_5xx": 0.0})
    run(defs, instance, evaluate(defs, instance))
    assert orders(sandbox2)["AL-1-1"]["ship_to_address"]["city"] == "Sparks"
    assert evaluate(defs, instance) == []


@pytest.mark.parametrize(
    ("policy", "runs"), [(dg.BackfillPolicy.single_run(), 1), (dg.BackfillPolicy.multi_run(1), 2)]
)
def test_requests_honour_the_backfill_policy(sandbox2, instance, tmp_path, policy, runs):
    warehouse = make_warehouse(str(tmp_path / "w.duckdb"), first_rows())
    defs = defs_of(make_sync(backfill_policy=policy), trackstar(sandbox2, tmp_path), warehouse, tmp_path)
    write_days(defs, instance, 0, 4)
    change_order(warehouse, "AL-1-0")
    change_order(warehouse, "AL-2-0")  # two days in a row: one range, or one run each
    requests = evaluate(defs, instance)
    assert len(requests) == runs
    assert sorted(requested_keys(defs, requests, instance)) == [day(1), day(2)]


def per_customer(sandbox2, instance, tmp_path) -> tuple[str, TrackstarSync, dg.Definitions]:
    """alpha's and beta's rows, a sync partitioned by day x connection, its connections added."""
    warehouse = make_warehouse(str(tmp_path / "w.duckdb"), first_rows(("alpha", "beta")))
    sync = make_sync(BY_CUSTOMER, partitions=trackstar_partitions(START, end_offset=DAYS, by_connection=True))
    ts = trackstar(sandbox2, tmp_path)
    add_connection_partitions(sync, ts, instance)
    return warehouse, sync, defs_of(sync, ts, warehouse, tmp_path)


def test_per_customer_partitions_ask_for_the_changed_day_and_customer_only(sandbox2, instance, tmp_path):
    warehouse, sync, defs = per_customer(sandbox2, instance, tmp_path)
    job = defs.resolve_job_def("late_job")
    write_each(job, instance, range(3))
    assert evaluate(defs, instance) == []

    change_order(warehouse, "BE-1-0")  # beta's order of day 1
    add_late_order(warehouse, "AL-2-late", 2, "alpha")  # a late order of alpha's day 2
    requests = evaluate(defs, instance)
    want = {
        str(dg.MultiPartitionKey({"date": day(1), "connection": "conn_b"})),
        str(dg.MultiPartitionKey({"date": day(2), "connection": "conn_a"})),
    }
    assert sorted(requested_keys(defs, requests, instance)) == sorted(want)
    run(defs, instance, requests)
    assert "AL-2-late" in orders(sandbox2, "conn_a")
    assert orders(sandbox2, "conn_b")["BE-1-0"]["ship_to_address"]["city"] == "Reno"  # create_only: reported
    assert evaluate(defs, instance) == []


def test_a_shared_run_that_fails_for_one_customer_still_watches_the_others(sandbox2, instance, tmp_path):
    """Days 0-1 x {alpha, beta} in one run, beta's token refused: the run fails, alpha's partitions are
    written in full and materialized with the fingerprint of their rows, so a later change to alpha's day 1
    is asked for (before, a partition of a failed run counted as never written: the change was not seen)."""
    warehouse, sync, defs = per_customer(sandbox2, instance, tmp_path)
    job = defs.resolve_job_def("late_job")
    write_each(job, instance, [3])  # each connection's write-info fetched and stored on a good run

    refused = trackstar(sandbox2, tmp_path, tokens={"conn_b": "tok-revoked"})
    shared = defs_of(sync, refused, warehouse, tmp_path).resolve_job_def("late_job")
    key = lambda d, c: str(dg.MultiPartitionKey({"date": day(d), "connection": c}))  # noqa: E731
    result = shared.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": key(0, "conn_a"),
            "dagster/asset_partition_range_end": key(1, "conn_b"),
        },
        raise_on_error=False,
    )
    assert not result.success
    assert {"AL-0-0", "AL-1-0"} <= set(orders(sandbox2, "conn_a"))
    assert evaluate(defs, instance) == []  # nothing changed since alpha's rows were written

    change_order(warehouse, "AL-1-0")
    assert requested_keys(defs, evaluate(defs, instance), instance) == [key(1, "conn_a")]


def test_a_run_that_passes_with_failed_records_is_asked_for_again(sandbox2, instance, tmp_path):
    """``max_failed_share`` lets a run pass with a few records not written (here beta's, its token refused).
    Its rows did not change, so nothing else would ever send those records again: the partition is stored
    as not written in full, and the sensor asks for it once; once they are written, it is quiet."""
    warehouse = make_warehouse(str(tmp_path / "w.duckdb"), first_rows(("alpha", "beta")))
    sync = make_sync(BY_CUSTOMER, max_failed_share=0.9)
    refused = trackstar(sandbox2, tmp_path, tokens={"conn_b": "tok-revoked"})
    defs = defs_of(sync, trackstar(sandbox2, tmp_path), warehouse, tmp_path)
    job = defs_of(sync, refused, warehouse, tmp_path).resolve_job_def("late_job")
    resolve_targets(trackstar(sandbox2, tmp_path), sync.mapping)  # write-info stored, as the schema assets do
    assert job.execute_in_process(instance=instance, partition_key=day(1)).success  # beta's records failed
    day1 = lambda prefix: {f"{prefix}-1-{i}" for i in range(3)}  # noqa: E731 - a customer's orders of day 1
    assert set(orders(sandbox2, "conn_a")) == day1("AL") and orders(sandbox2, "conn_b") == {}
    first = evaluate(defs, instance)
    assert requested_keys(defs, first, instance) == [day(1)]
    assert [r.run_key for r in evaluate(defs, instance)] == [r.run_key for r in first]  # asked for once

    run(defs, instance, first)
    assert set(orders(sandbox2, "conn_b")) == day1("BE") and len(orders(sandbox2, "conn_a")) == 3
    assert evaluate(defs, instance) == []


def test_a_probe_of_any_loader_is_a_callable(sandbox2, instance, tmp_path):
    """A sync reading rows some other way gives its own probe: {partition key: Fingerprint}."""
    frame = first_rows()
    seen: list[ProbeRequest] = []

    def probe(context, request: ProbeRequest) -> dict[str, Fingerprint]:
        seen.append(request)
        rows = frame[frame["order_date"] < request.window.end.replace(tzinfo=None)]
        out = {}
        for key, part in rows.groupby(rows["order_date"].dt.strftime("%Y-%m-%d")):
            out[key] = Fingerprint.of(len(part), part["updated_at"].max())
        return out

    def loader(context, window):
        start, end = (pd.Timestamp(t).tz_localize(None) for t in (window.start, window.end))
        return frame[(frame["order_date"] >= start) & (frame["order_date"] < end)]

    sync = dataclasses.replace(
        make_sync(loader=loader), changes_sensor=ChangesSensor(updated_column="updated_at", probe=probe)
    )
    warehouse = make_warehouse(str(tmp_path / "w.duckdb"), frame.head(0))
    defs = defs_of(sync, trackstar(sandbox2, tmp_path), warehouse, tmp_path)
    write_days(defs, instance, 0, 2)
    assert evaluate(defs, instance) == []
    frame.loc[frame["order_id"] == "AL-0-1", ["city", "updated_at"]] = ["Elko", pd.Timestamp(day(4))]
    requests = evaluate(defs, instance)
    assert requested_keys(defs, requests, instance) == [day(0)]
    assert seen and seen[-1].updated_column == "updated_at"


def test_no_false_alarm_with_zoned_timestamps_and_open_routing(sandbox2, instance, tmp_path):
    """The probe and the run agree on rows and maxima whatever the column types and routing: zoned
    timestamps (DuckDB TIMESTAMPTZ), a column naming the connection in any case and with spaces."""
    frame = first_rows(("alpha", "beta"))
    frame["customer"] = frame["customer"].map({"alpha": "CONN_A", "beta": " conn_b "})
    for col in ("order_date", "updated_at"):
        frame[col] = frame[col].dt.tz_localize("UTC")
    warehouse = make_warehouse(str(tmp_path / "w.duckdb"), frame)
    mapping = MappingConfig.model_validate(
        {"action": "create_order", "key": "order_id", "connection_column": "customer", "fields": ORDER_FIELDS}
    )
    parts = trackstar_partitions(START, end_offset=DAYS, by_connection=True, connections=["conn_a", "conn_b"])
    defs = defs_of(make_sync(mapping, partitions=parts), trackstar(sandbox2, tmp_path), warehouse, tmp_path)
    job = defs.resolve_job_def("late_job")
    write_each(job, instance, range(2))
    assert evaluate(defs, instance) == []
    change_order(warehouse, "BE-0-2")
    requests = evaluate(defs, instance)
    assert requested_keys(defs, requests, instance) == [
        str(dg.MultiPartitionKey({"date": day(0), "connection": "conn_b"}))
    ]


def _example_tick(defs: dg.Definitions, instance) -> list[dg.RunRequest]:
    sensor = defs.resolve_sensor_def("orders_sync_changes_sensor")
    resources = {k: defs.resources[k] for k in sensor.required_resource_keys}
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        result = sensor(ctx)
    return [] if isinstance(result, dg.SkipReason) else list(result.run_requests or [])


def _example_written_and_changed(example_env) -> tuple[dg.Definitions, dg.DagsterInstance, str]:
    """The example's schemas and three days written; then one valid acme order of 2026-11-21 changed."""
    defs = load_example_defs()
    instance = dg.DagsterInstance.get()
    materialize_schemas(defs, instance)
    assert _run_backfill(defs, instance).success
    assert _example_tick(defs, instance) == []
    con = duckdb.connect(example_env["TRACKSTAR_EXAMPLE_WAREHOUSE"])
    (order_id,) = con.execute(
        "SELECT order_id FROM order_lines WHERE customer = 'acme' AND order_date >= '2026-11-21' "
        "AND order_date < '2026-11-22' AND order_id NOT IN (SELECT order_id FROM seed_dirt) LIMIT 1"
    ).fetchone()
    con.execute(  # changed after its day ran: updated_at says when
        "UPDATE order_lines SET ship_city = 'Sparks', updated_at = TIMESTAMP '2026-11-25 08:00' WHERE order_id = ?",
        [order_id],
    )
    con.close()
    return defs, instance, order_id


def test_the_example_project_watches_its_orders(example_env, sandbox):
    """The example's YAML turns the sensor on; after its backfill, one changed order asks for its day and
    customer only."""
    defs, instance, _ = _example_written_and_changed(example_env)
    assert (
        defs.resolve_sensor_def("orders_sync_changes_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    )
    (request,) = _example_tick(defs, instance)
    assert request.partition_key == "acme_wms|2026-11-21" or (
        request.tags[RANGE_START] == request.tags[RANGE_END] == "acme_wms|2026-11-21"
    )


def test_the_example_reports_a_changed_order_in_create_only(example_env, sandbox):
    defs, instance, order_id = _example_written_and_changed(example_env)
    (request,) = _example_tick(defs, instance)
    job = defs.resolve_job_def("orders_sync_job")
    assert job.execute_in_process(
        instance=instance, tags=request.tags, partition_key=request.partition_key
    ).success
    con = duckdb.connect(example_env["TRACKSTAR_EXAMPLE_WAREHOUSE"], read_only=True)
    status, changed = con.execute(
        "SELECT status, body_changed FROM trackstar_orders_write_results WHERE key = ?", [order_id]
    ).fetchone()
    con.close()
    assert (status, changed) == ("unchanged", True)
    assert _example_tick(defs, instance) == []


def test_groups_are_placed_in_the_partitions_own_timezone():
    """Buckets (hours, when the partitions' days are not UTC days) go to the day they fall in, in its
    timezone; buckets outside the probed window are left out."""
    pdef = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="America/New_York")
    window = dg.TimeWindow(
        pdef.time_window_for_partition_key("2026-11-02").start,
        pdef.time_window_for_partition_key("2026-11-03").end,
    )
    hours = [
        "2026-11-03 04:00",
        "2026-11-03 05:00",
        "2026-11-04 04:00",
        "2026-11-04 05:00",
        "2026-11-02 05:00",
    ]
    groups = pd.DataFrame(
        {
            "bucket": pd.to_datetime(hours, utc=True),  # 04:00 UTC is 23:00 the day before in New York (EST)
            "route": [None] * 5,
            "rows": [1, 2, 4, 8, 16],
            "updated": pd.to_datetime(hours, utc=True),
        }
    )
    request = ProbeRequest(window, pdef, SINGLE, "order_date", "updated_at")
    got = fingerprints_of_groups(groups, request)
    assert got == {
        "2026-11-02": Fingerprint.of(1 + 16, pd.Timestamp("2026-11-03 04:00", tz="UTC")),
        "2026-11-03": Fingerprint.of(2 + 4, pd.Timestamp("2026-11-04 04:00", tz="UTC")),
    }  # 2026-11-04 05:00 UTC is the 4th in New York: outside the window
