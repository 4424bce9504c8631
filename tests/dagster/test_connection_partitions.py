"""A sync partitioned by day x connection, on a real Dagster instance, a real sandbox and a DuckDB warehouse.

Runs are made the way Dagster's backfill daemon makes them (``build_run_requests_with_backfill_policies``,
what ``asset_backfill`` calls): a single-run backfill of several connections over many days becomes one run
per connection; one day of every connection, one run.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import (
    build_run_requests_with_backfill_policies,
)
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.partition_status_cache import AssetPartitionStatus
from dagster_duckdb import DuckDBResource

from tests.dagster.test_sync import ORDER_FIELDS, order_line
from trackstar_dagster import MappingConfig, TrackstarConnection, TrackstarResource, TrackstarSync
from trackstar_dagster.io_manager import read_partition
from trackstar_dagster.partitions import mapping_for
from trackstar_dagster.sql import sql_row_loader
from trackstar_dagster.sync import (
    add_connection_partitions,
    trackstar_io_manager_resources,
    trackstar_partitions,
)
from trackstar_dagster.sync.assets import resolve_targets
from trackstar_dagster.sync.partitioning import PartitionCountWarning

START = date(2024, 1, 1)
DAYS = 730
CUSTOMERS = {"alpha": "conn_a", "beta": "conn_b", "gamma": "conn_c"}
TOKENS = {"conn_a": "tok-a", "conn_b": "tok-b", "conn_c": "tok-c", "conn_d": "tok-d"}
UMBRELLA_EVERY = 100  # an unmapped customer's order every 100th day: a routing reject in "_unrouted"

MAPPING = MappingConfig.model_validate(
    {
        "action": "create_order",
        "key": "order_id",
        "connection_column": "customer",
        "connection_values": {**CUSTOMERS, "delta": "conn_d"},
        "fields": ORDER_FIELDS,
    }
)


def day(i: int) -> str:
    return (START + timedelta(days=i)).isoformat()


def order_lines(customers=("alpha", "beta", "gamma", "delta")) -> pd.DataFrame:
    """One order (two lines) a day per customer for two years, and now and then an unmapped customer's."""
    out = []
    for i in range(DAYS):
        who = list(customers) + (["umbrella"] if i % UMBRELLA_EVERY == 0 else [])
        for c in who:
            for line in range(2):
                out.append(
                    order_line(
                        f"{c[:2].upper()}-{i:04d}",
                        line,
                        customer=c if c != "beta" or i % 2 else f" {c} ",  # routing trims the value
                        order_date=pd.Timestamp(day(i)) + pd.Timedelta(hours=10),
                    )
                )
    return pd.DataFrame(out)


@pytest.fixture
def sandbox4(sandbox_factory):
    return sandbox_factory(connections={tok: {"integration_name": "wms_sandbox"} for tok in TOKENS.values()})


@pytest.fixture
def warehouse(tmp_path) -> str:
    path = str(tmp_path / "warehouse.duckdb")
    frame = order_lines()
    con = duckdb.connect(path)
    con.register("f", frame)
    con.execute("CREATE TABLE order_lines AS SELECT * FROM f")
    con.close()
    return path


def trackstar(sandbox, tmp_path, names=("conn_a", "conn_b", "conn_c"), tokens=None) -> TrackstarResource:
    tokens = {**TOKENS, **(tokens or {})}
    return TrackstarResource(
        api_key=sandbox.api_key,
        base_url=sandbox.base_url,
        state_dir=str(tmp_path / "state"),
        connections=[
            TrackstarConnection(name=n, access_token=tokens[n], integration_name="wms_sandbox") for n in names
        ],
    )


def make_sync(**partitions) -> TrackstarSync:
    return TrackstarSync(
        name="parts",
        mapping=MAPPING,
        load_rows=sql_row_loader("order_lines", "order_date", "duckdb", MAPPING),
        date_column="order_date",
        partitions=trackstar_partitions(START, by_connection=True, **partitions),
        extra_resource_keys=frozenset({"duckdb"}),
        max_reject_share=0.5,  # a day of 3 customers and one unmapped order: 25% rejected
    )


def resources(ts: TrackstarResource, warehouse: str, tmp_path) -> dict:
    return {
        "trackstar": ts,
        "duckdb": DuckDBResource(database=warehouse),
        **trackstar_io_manager_resources(str(tmp_path / "io")),
    }


def sync_defs(sync: TrackstarSync, ts: TrackstarResource, warehouse: str, tmp_path) -> dg.Definitions:
    return dg.Definitions.merge(
        sync.build_defs(trackstar=ts, io_manager_base_dir=str(tmp_path / "io")),
        dg.Definitions(resources={"duckdb": DuckDBResource(database=warehouse)}),
    )


def keys(days: range, conns: list[str]) -> list[str]:
    return [str(dg.MultiPartitionKey({"date": day(i), "connection": c})) for c in conns for i in days]


def backfill(defs: dg.Definitions, sync: TrackstarSync, instance, partition_keys: list[str]):
    """Run a single-run backfill of these keys as Dagster's backfill daemon would: its run requests, each run."""
    graph = defs.resolve_asset_graph()
    with partition_loading_context(dynamic_partitions_store=instance):
        requests = build_run_requests_with_backfill_policies(
            asset_partitions=[
                AssetKeyPartitionKey(k, pk)
                for k in (sync.payloads_key, sync.rejects_key, sync.results_key)
                for pk in partition_keys
            ],
            asset_graph=graph,
            dynamic_partitions_store=instance,
        )
    job = defs.resolve_job_def(sync.job_name)
    results = [
        job.execute_in_process(instance=instance, tags=rr.tags, raise_on_error=False) for rr in requests
    ]
    return requests, results


def materialized(result, key: dg.AssetKey, name: str) -> dict[str, object]:
    """Each partition's value of one metadata entry, from the run's materializations of ``key``."""
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key == key and name in mat.metadata:
            out[mat.partition] = mat.metadata[name].value
    return out


def records(sandbox, conn: str) -> list[dict]:
    return sandbox.records("orders", token=TOKENS[conn])


# ---------------------------------------------------------------------------------------------------------


def test_partition_keys_are_days_by_connection_and_the_sensor_adds_new_connections(
    sandbox4, instance, tmp_path, warehouse
):
    sync = make_sync()
    pdef = sync.partitions_def
    assert isinstance(pdef, dg.MultiPartitionsDefinition)
    assert sorted(pdef.partition_dimension_names) == ["connection", "date"]
    dims = {d.name: d.partitions_def for d in pdef.partitions_defs}
    assert isinstance(dims["date"], dg.DailyPartitionsDefinition)
    assert dims["connection"] == dg.DynamicPartitionsDefinition(name="parts_connections")

    ts = trackstar(sandbox4, tmp_path)
    sensor = sync_defs(sync, ts, warehouse, tmp_path).resolve_sensor_def("parts_connections_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.build_sensor_context(instance=instance, resources={"trackstar": ts}) as ctx:
        result = sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.dynamic_partitions_requests
    assert request.partitions_def_name == "parts_connections"
    assert list(request.partition_keys) == ["conn_a", "conn_b", "conn_c", "_unrouted"]
    instance.add_dynamic_partitions("parts_connections", list(request.partition_keys))

    n_days = dims["date"].get_num_partitions()
    all_keys = pdef.get_partition_keys(dynamic_partitions_store=instance)
    assert len(all_keys) == n_days * 4
    assert "conn_a|2024-01-01" in all_keys and "_unrouted|2025-12-30" in all_keys

    # conn_d joins the resource, conn_c leaves it: conn_d is added, conn_c's history stays
    later = trackstar(sandbox4, tmp_path, names=("conn_a", "conn_b", "conn_d"))
    with dg.build_sensor_context(instance=instance, resources={"trackstar": later}) as ctx:
        result = sensor(ctx)
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["conn_d"]]
    instance.add_dynamic_partitions("parts_connections", ["conn_d"])
    assert instance.get_dynamic_partitions("parts_connections") == [
        "conn_a",
        "conn_b",
        "conn_c",
        "_unrouted",
        "conn_d",
    ]
    with dg.build_sensor_context(instance=instance, resources={"trackstar": later}) as ctx:
        assert isinstance(sensor(ctx), dg.SkipReason)


def test_grains_and_a_warning_past_dagsters_recommended_count():
    week = make_sync(grain="week").partitions_def
    assert isinstance(week, dg.MultiPartitionsDefinition)
    assert isinstance(week.time_window_partitions_def, dg.WeeklyPartitionsDefinition)
    names = [f"c{i:03d}" for i in range(500)]
    with pytest.warns(PartitionCountWarning, match=r"x 500 connections = .* more than the 100,000"):
        make_sync(connections=names)  # 500 x ~1,065 days
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", PartitionCountWarning)
        monthly = make_sync(connections=names, grain="month").partitions_def
    assert isinstance(monthly, dg.MultiPartitionsDefinition)
    assert monthly.get_partitions_def_for_dimension("connection") == dg.StaticPartitionsDefinition(names)
    with pytest.raises(Exception, match="grain"):
        make_sync(grain="hour")


def test_one_customer_two_year_backfill_is_one_run_and_sends_only_that_customer(
    sandbox4, tmp_path, warehouse
):
    # 730 x 3 materializations: Dagster's in-memory instance (SQLite on disk syncs each event: 4-5 minutes here)
    instance = dg.DagsterInstance.ephemeral()
    asked: list = []
    sql_load = sql_row_loader("order_lines", "order_date", "duckdb", MAPPING)

    def load(context, request):
        asked.append(request)
        return sql_load(context, request)

    load.takes_rows_request = True
    sync = dataclasses.replace(make_sync(), load_rows=load)
    ts = trackstar(sandbox4, tmp_path)
    defs = sync_defs(sync, ts, warehouse, tmp_path)
    assert add_connection_partitions(sync, ts, instance) == ["conn_a", "conn_b", "conn_c", "_unrouted"]

    wanted = keys(range(DAYS), ["conn_a"])
    requests, (result,) = backfill(defs, sync, instance, wanted)
    failures = [
        e.event_specific_data.error for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ]
    assert not failures, failures[0].to_string()
    assert len(requests) == 1  # grouped by the connection: the dimension with fewer selected keys
    assert requests[0].tags["dagster/asset_partition_range_start"] == f"conn_a|{day(0)}"
    assert requests[0].tags["dagster/asset_partition_range_end"] == f"conn_a|{day(DAYS - 1)}"
    assert result.success

    # load_rows was asked for that customer only, a month of days at a time, every key once
    assert {r.connections for r in asked} == {("conn_a",)}
    assert len(asked) == 25 and sorted(k for r in asked for k in r.partition_keys) == sorted(wanted)
    # the run covered exactly these 730 keys, and each got its own figures
    created = materialized(result, sync.results_key, "status_created")
    assert sorted(created) == sorted(wanted) and set(created.values()) == {1}
    per_conn = materialized(result, sync.payloads_key, "records_conn_a")
    assert len(per_conn) == DAYS and set(per_conn.values()) == {1}
    sources = materialized(result, sync.payloads_key, "source_rows")
    assert set(sources.values()) == {2}
    # only that customer's orders went out
    assert len(records(sandbox4, "conn_a")) == DAYS
    assert records(sandbox4, "conn_b") == records(sandbox4, "conn_c") == []
    stored = sync.read_results(base_dir=str(tmp_path / "io"))
    assert set(stored["partition"]) == set(wanted) and set(stored["connection"]) == {"conn_a"}


def test_all_customers_one_day_is_one_run_and_unrouted_rows_keep_their_rejects(
    sandbox4, instance, tmp_path, warehouse
):
    sync = make_sync()
    ts = trackstar(sandbox4, tmp_path)
    defs = sync_defs(sync, ts, warehouse, tmp_path)
    add_connection_partitions(sync, ts, instance)
    the_day = 200  # an umbrella day
    conns = ["conn_a", "conn_b", "conn_c", "_unrouted"]
    wanted = keys(range(the_day, the_day + 1), conns)
    requests, (result,) = backfill(defs, sync, instance, wanted)
    assert len(requests) == 1 and result.success
    created = materialized(result, sync.results_key, "status_created")
    assert created == {k: (0 if k.startswith("_unrouted") else 1) for k in wanted}
    rejected = materialized(result, sync.rejects_key, "rejected_records")
    assert rejected == {k: (1 if k.startswith("_unrouted") else 0) for k in wanted}
    for conn in ("conn_a", "conn_b", "conn_c"):
        assert [r["order_number"] for r in records(sandbox4, conn)] == [
            f"{k[:2].upper()}-{the_day:04d}" for k, v in CUSTOMERS.items() if v == conn
        ]


def test_a_connection_added_later_is_a_partition_and_can_be_backfilled_alone(
    sandbox4, instance, tmp_path, warehouse
):
    sync = make_sync()
    ts = trackstar(sandbox4, tmp_path)
    add_connection_partitions(sync, ts, instance)
    later = trackstar(sandbox4, tmp_path, names=("conn_a", "conn_b", "conn_c", "conn_d"))
    assert add_connection_partitions(sync, later, instance) == ["conn_d"]
    defs = sync_defs(sync, later, warehouse, tmp_path)
    wanted = keys(range(10, 13), ["conn_d"])
    requests, (result,) = backfill(defs, sync, instance, wanted)
    assert len(requests) == 1 and result.success
    assert sorted(r["order_number"] for r in records(sandbox4, "conn_d")) == ["DE-0010", "DE-0011", "DE-0012"]
    assert all(records(sandbox4, c) == [] for c in ("conn_a", "conn_b", "conn_c"))


def test_one_customers_refused_token_fails_only_its_partitions(sandbox4, instance, tmp_path, warehouse):
    """conn_b's token is refused (401) at write time: a backfill of 3 days x {a, b} is one run per connection
    (fewer connections than days): a's run succeeds and its partitions are materialized, b's fails."""
    sync = make_sync()
    good = trackstar(sandbox4, tmp_path)
    resolve_targets(
        good, mapping_for(MAPPING, ["conn_a", "conn_b", "conn_c"])
    )  # each connection's write-info stored, as the schema assets would
    add_connection_partitions(sync, good, instance)
    refused = trackstar(sandbox4, tmp_path, tokens={"conn_b": "tok-revoked"})
    defs = sync_defs(sync, refused, warehouse, tmp_path)
    a_keys, b_keys = keys(range(20, 23), ["conn_a"]), keys(range(20, 23), ["conn_b"])
    requests, results = backfill(defs, sync, instance, a_keys + b_keys)
    assert len(requests) == 2
    by_conn = {
        rr.tags["dagster/asset_partition_range_start"].split("|")[0]: r
        for rr, r in zip(requests, results, strict=True)
    }
    assert by_conn["conn_a"].success and not by_conn["conn_b"].success
    failed_steps = {e.step_key for e in by_conn["conn_b"].all_events if e.event_type_value == "STEP_FAILURE"}
    assert failed_steps == {sync.results_key.to_python_identifier()}  # the writes were refused, not the rows
    assert len(records(sandbox4, "conn_a")) == 3 and records(sandbox4, "conn_b") == []
    assert instance.get_materialized_partitions(sync.results_key) == set(a_keys)
    # b's partitions: payloads materialized (built fine), write results failed
    assert set(b_keys) <= instance.get_materialized_partitions(sync.payloads_key)
    assert not set(b_keys) & instance.get_materialized_partitions(sync.results_key)


def test_the_sql_loader_filters_by_connection_with_parameters_only(warehouse, tmp_path):
    """The loader's connection filter: trimmed routing values, the unrouted rows, names never pasted into SQL."""
    from trackstar_dagster.partitions import RowsRequest

    hostile = "x'); DROP TABLE order_lines; --"
    mapping = MAPPING.model_copy(
        update={"connection_values": {**MAPPING.connection_values, hostile: "conn_x"}}
    )
    load = sql_row_loader("order_lines", "order_date", "duckdb", mapping)
    window = dg.TimeWindow(pd.Timestamp(day(200), tz="UTC"), pd.Timestamp(day(202), tz="UTC"))
    with dg.build_asset_context(resources={"duckdb": DuckDBResource(database=warehouse)}) as ctx:
        beta = load(ctx, RowsRequest(window, ("conn_b",), ()))
        unrouted = load(ctx, RowsRequest(window, ("_unrouted",), ()))
        hostile_rows = load(ctx, RowsRequest(window, ("conn_x",), ()))
        every = load(ctx, window)
    assert sorted(beta["customer"].unique()) == [" beta ", "beta"]  # day 200 trimmed, day 201 as is
    assert len(beta) == 4
    assert set(unrouted["customer"]) == {"umbrella"} and len(unrouted) == 2
    assert hostile_rows.empty
    assert len(every) == 2 * 4 * 2 + 2  # two days, four customers, two lines; day 200's umbrella order
    assert duckdb.connect(warehouse, read_only=True).execute("SELECT count(*) FROM order_lines").fetchone()[0]


def test_the_component_reads_grain_and_by_connection_from_yaml():
    from trackstar_dagster.component import PartitionsModel

    model = PartitionsModel.model_validate(
        {"start_date": "2024-01-01", "grain": "week", "by_connection": True, "connection_names": ["a", "b"]}
    )
    pdef = model.spec().partitions_def("orders_sync")
    assert isinstance(pdef, dg.MultiPartitionsDefinition)
    assert isinstance(pdef.get_partitions_def_for_dimension("date"), dg.WeeklyPartitionsDefinition)
    assert pdef.get_partitions_def_for_dimension("connection") == dg.StaticPartitionsDefinition(["a", "b"])
    dynamic = PartitionsModel.model_validate({"start_date": "2024-01-01", "by_connection": True}).spec()
    assert dynamic.partitions_def("orders_sync").get_partitions_def_for_dimension(
        "connection"
    ) == dg.DynamicPartitionsDefinition(name="orders_sync_connections")
    with pytest.raises(Exception, match="grain"):
        PartitionsModel.model_validate({"start_date": "2024-01-01", "grain": "hour"})


def test_one_run_of_several_connections_fails_only_the_refused_ones_partitions(
    sandbox4, instance, tmp_path, warehouse
):
    """What Dagster does inside one run: 1 day x {a, b} is one run (grouped by the day, the dimension with
    fewer keys); b's refused writes fail the write step, so the run fails. a's orders were written: its
    partition is materialized with its figures (it was shown failed, though its orders were in Trackstar), b's
    is not. Run b again once its token is good: only b's order is sent."""
    sync = make_sync()
    good = trackstar(sandbox4, tmp_path)
    resolve_targets(good, mapping_for(MAPPING, ["conn_a", "conn_b", "conn_c"]))
    add_connection_partitions(sync, good, instance)
    defs = sync_defs(
        sync, trackstar(sandbox4, tmp_path, tokens={"conn_b": "tok-revoked"}), warehouse, tmp_path
    )
    a_key, b_key = f"conn_a|{day(30)}", f"conn_b|{day(30)}"
    requests, (result,) = backfill(defs, sync, instance, [a_key, b_key])
    assert len(requests) == 1 and not result.success
    assert len(records(sandbox4, "conn_a")) == 1 and records(sandbox4, "conn_b") == []
    assert instance.get_materialized_partitions(sync.results_key) == {a_key}
    logged = instance.fetch_materializations(sync.results_key, limit=10).records
    assert {r.partition_key: r.asset_materialization.metadata["status_created"].value for r in logged} == {
        a_key: 1
    }
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "conn_b" in failure.event_specific_data.error_display_string
    status = instance.get_status_by_partition(
        sync.results_key, [a_key, b_key], sync.partitions_def
    )  # what the UI shows
    assert status[a_key] == AssetPartitionStatus.MATERIALIZED
    assert status[b_key] == AssetPartitionStatus.FAILED
    # a's results are stored where a downstream asset loads them from
    stored = read_partition(tmp_path.joinpath("io", *sync.results_key.path), a_key)
    assert stored is not None and stored["status"].tolist() == ["created"]

    fixed = sync_defs(sync, good, warehouse, tmp_path)
    _, (again,) = backfill(fixed, sync, instance, [b_key])
    assert again.success
    assert len(records(sandbox4, "conn_a")) == 1 and len(records(sandbox4, "conn_b")) == 1
    assert instance.get_materialized_partitions(sync.results_key) == {a_key, b_key}


def test_the_cli_adds_the_example_projects_connections(tmp_path, monkeypatch, capsys):
    """``trackstar-dagster partitions add-connections``: the sensor's tick without a daemon."""
    from trackstar_dagster.cli import main

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    from trackstar_example.settings import SANDBOX_DEFAULTS

    for name, value in SANDBOX_DEFAULTS.items():  # the sensor's resource reads its EnvVars (the daemon's env)
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRACKSTAR_EXAMPLE_WAREHOUSE", str(tmp_path / "w.duckdb"))
    args = ["partitions", "add-connections", "-m", "trackstar_example.definitions"]
    assert main(args) == 0
    assert "orders_sync_connections_sensor: added acme_wms, globex_shiphero, initech_shipbob, _unrouted" in (
        capsys.readouterr().out
    )
    assert main(args) == 0
    assert "no new connection" in capsys.readouterr().out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_dynamic_partitions("orders_sync_connections")) == 4
    assert main(["partitions", "add-connections", "-m", "trackstar_dagster.sync", "-a", "nope"]) == 2


def test_an_old_loader_gives_every_customer_and_the_others_are_counted_not_sent(
    sandbox4, instance, tmp_path, warehouse
):
    frame = order_lines()

    def load(context, window):  # the first release's loader: a window, every customer's rows
        dates = frame["order_date"].dt.tz_localize("UTC")
        return frame[(dates >= window.start) & (dates < window.end)]

    sync = dataclasses.replace(make_sync(), load_rows=load)
    ts = trackstar(sandbox4, tmp_path)
    add_connection_partitions(sync, ts, instance)
    wanted = keys(range(40, 43), ["conn_c"])
    _, (result,) = backfill(sync_defs(sync, ts, warehouse, tmp_path), sync, instance, wanted)
    assert result.success
    assert sorted(r["order_number"] for r in records(sandbox4, "conn_c")) == ["GA-0040", "GA-0041", "GA-0042"]
    assert records(sandbox4, "conn_a") == records(sandbox4, "conn_b") == []
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("18 rows of connections outside this run's partitions (conn_c) left out" in m for m in logged)


def test_open_routing_by_connection_partitions_send_each_customer_its_own_rows(
    sandbox4, instance, tmp_path, warehouse
):
    """Hundreds of connections route by a column naming them (no connection_values): the day x connection
    partitions, the loader's filter and the targets follow the rows' names; a name no connection has is a
    routing reject in ``_unrouted``."""
    con = duckdb.connect(warehouse)
    con.execute(
        "UPDATE order_lines SET customer = CASE trim(customer) WHEN 'alpha' THEN 'conn_a' "
        "WHEN 'beta' THEN 'conn_b' WHEN 'gamma' THEN 'conn_c' WHEN 'delta' THEN 'conn_d' ELSE customer END"
    )
    con.close()
    mapping = MAPPING.model_copy(update={"connection_values": {}})
    assert mapping.open_routing
    sync = dataclasses.replace(
        make_sync(), mapping=mapping, load_rows=sql_row_loader("order_lines", "order_date", "duckdb", mapping)
    )
    ts = trackstar(sandbox4, tmp_path)
    defs = sync_defs(sync, ts, warehouse, tmp_path)
    add_connection_partitions(sync, ts, instance)
    the_day = 200  # an umbrella day
    # one customer over ten days: one run, only its rows
    requests, (one,) = backfill(defs, sync, instance, keys(range(10), ["conn_b"]))
    assert len(requests) == 1 and one.success
    assert sorted(r["order_number"] for r in records(sandbox4, "conn_b")) == [
        f"BE-{i:04d}" for i in range(10)
    ]
    assert records(sandbox4, "conn_a") == [] and records(sandbox4, "conn_c") == []
    # every customer on one day: one run, each its own order, the unknown name a reject
    conns = ["conn_a", "conn_b", "conn_c", "_unrouted"]
    requests, (day_run,) = backfill(defs, sync, instance, keys(range(the_day, the_day + 1), conns))
    assert len(requests) == 1 and day_run.success
    created = materialized(day_run, sync.results_key, "status_created")
    assert created == {
        k: (0 if k.startswith("_unrouted") else 1) for k in keys(range(the_day, the_day + 1), conns)
    }
    rejected = materialized(day_run, sync.rejects_key, "rejected_records")
    # the unknown customer and conn_d (named by the rows, not configured here): routing rejects
    assert sum(rejected.values()) == 2 and rejected[keys(range(the_day, the_day + 1), ["_unrouted"])[0]] == 2
    assert [r["order_number"] for r in records(sandbox4, "conn_a")] == [f"AL-{the_day:04d}"]
