"""The example project end to end: its asset graph, a 3-day backfill against the sandbox (twice), the UI's API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
END = date(2026, 11, 24)
RANGE = ("2026-11-20", "2026-11-22")


@pytest.fixture
def example_env(tmp_path, monkeypatch, sandbox):
    """Environment of the example project pointed at a test sandbox, a temp warehouse and a temp DAGSTER_HOME."""
    from trackstar_example.warehouse import seed_warehouse

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "example_project" / "dagster.yaml").read_text())
    warehouse = tmp_path / "warehouse.duckdb"
    seed_warehouse(warehouse, end_date=END, days=10)
    env = {
        "DAGSTER_HOME": str(home),
        "TRACKSTAR_BASE_URL": sandbox.base_url,
        "TRACKSTAR_API_KEY": sandbox.api_key,
        "ACME_WMS_TOKEN": "sandbox-token-wms",
        "GLOBEX_SHIPHERO_TOKEN": "sandbox-token-shiphero",
        "INITECH_SHIPBOB_TOKEN": "sandbox-token-shipbob",
        "TRACKSTAR_EXAMPLE_WAREHOUSE": str(warehouse),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def load_example_defs() -> dg.Definitions:
    from trackstar_example.definitions import defs

    return defs() if callable(defs) else defs


def test_asset_graph_has_the_lineage_schedule_partitions_checks_and_pools(example_env):
    defs = load_example_defs()
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey
    payloads, rejects, results = (
        key(["orders_sync", "payloads"]),
        key(["orders_sync", "rejects"]),
        key(["orders_sync", "write_results"]),
    )
    assert key(["warehouse", "order_lines"]) in graph.get(payloads).parent_keys
    assert key(["trackstar", "write_info"]) in graph.get(payloads).parent_keys
    assert key(["trackstar", "integrations"]) in graph.get(key(["trackstar", "write_info"])).parent_keys
    assert payloads in graph.get(results).parent_keys
    assert graph.get(rejects).parent_keys >= {key(["warehouse", "order_lines"])}

    pdef = graph.get(payloads).partitions_def
    assert isinstance(pdef, dg.MultiPartitionsDefinition)  # day x connection
    assert isinstance(pdef.get_partitions_def_for_dimension("date"), dg.DailyPartitionsDefinition)
    assert pdef.get_partitions_def_for_dimension("connection") == dg.DynamicPartitionsDefinition(
        name="orders_sync_connections"
    )
    assert defs.resolve_sensor_def("orders_sync_connections_sensor") is not None
    assert graph.get(results).backfill_policy == dg.BackfillPolicy.single_run()

    schedule = defs.resolve_schedule_def("orders_sync_schedule")
    assert schedule.cron_schedule == "0 3 * * *"

    check_keys = {(c.asset_key, c.name) for c in graph.asset_check_keys}
    assert (payloads, "rows_valid") in check_keys
    assert (payloads, "reject_share") in check_keys
    assert (key(["trackstar", "write_info"]), "schema_drift") in check_keys

    # the write step runs in the sync's pool; the payloads step stays out of it (so a dead holder cannot block the
    # step that frees it) and claims the pool for its run's write step itself (trackstar_dagster.pools.hold_pool)
    pools = {n.key: n.pools for n in (graph.get(payloads), graph.get(results))}
    assert pools == {payloads: set(), results: {"trackstar_orders_sync"}}, pools


def _valid_orders_in_range(warehouse: str, start: str, end: str) -> tuple[set[str], set[str]]:
    con = duckdb.connect(warehouse, read_only=True)
    try:
        rows = con.execute(
            "SELECT DISTINCT order_id FROM order_lines WHERE order_date >= ? AND order_date < ?::DATE + 1",
            [start, end],
        ).fetchall()
        dirty = con.execute("SELECT order_id FROM seed_dirt WHERE expect_reject").fetchall()
    finally:
        con.close()
    all_ids = {r[0] for r in rows}
    bad = {r[0] for r in dirty} & all_ids
    return all_ids - bad, bad


def materialize_schemas(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """The example's catalog and write-info assets (group ``trackstar``), as a first run in the UI would."""
    schemas = dg.Definitions.merge(
        defs,
        dg.Definitions(
            jobs=[dg.define_asset_job("schemas", selection=dg.AssetSelection.groups("trackstar"))]
        ),
    )
    assert schemas.resolve_job_def("schemas").execute_in_process(instance=instance).success


def _run_backfill(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Three days of every connection (the sensor's tick adds them to the sync's partitions), one run."""
    from trackstar_dagster.sync import tick_connection_sensors

    tick_connection_sensors(defs, instance)
    conns = instance.get_dynamic_partitions("orders_sync_connections")
    assert conns == ["acme_wms", "globex_shiphero", "initech_shipbob", "_unrouted"]
    job = defs.resolve_job_def("orders_sync_job")
    return job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": f"{conns[0]}|{RANGE[0]}",
            "dagster/asset_partition_range_end": f"{conns[-1]}|{RANGE[1]}",
        },
    )


def test_backfill_of_three_partitions_writes_each_valid_order_once_and_keeps_the_bad_ones(
    example_env, sandbox
):
    defs = load_example_defs()
    instance = dg.DagsterInstance.get()
    materialize_schemas(defs, instance)

    first = _run_backfill(defs, instance)
    assert first.success
    valid, bad = _valid_orders_in_range(example_env["TRACKSTAR_EXAMPLE_WAREHOUSE"], *RANGE)
    assert valid and bad

    stored = [
        r
        for token in ("sandbox-token-wms", "sandbox-token-shiphero", "sandbox-token-shipbob")
        for r in sandbox.records("orders", token=token)
    ]
    stored_keys = [r.get("order_number") or r.get("reference_id") for r in stored]
    assert len(stored) == len(valid)
    assert len(set(stored_keys)) == len(stored_keys)

    con = duckdb.connect(example_env["TRACKSTAR_EXAMPLE_WAREHOUSE"], read_only=True)
    try:
        rejected = {r[0] for r in con.execute("SELECT DISTINCT key FROM trackstar_orders_rejects").fetchall()}
        statuses = dict(
            con.execute("SELECT status, count(*) FROM trackstar_orders_write_results GROUP BY 1").fetchall()
        )
    finally:
        con.close()
    assert bad <= rejected
    assert statuses.get("created") == len(valid)

    second = _run_backfill(defs, instance)
    assert second.success
    again = [
        r
        for token in ("sandbox-token-wms", "sandbox-token-shiphero", "sandbox-token-shipbob")
        for r in sandbox.records("orders", token=token)
    ]
    assert len(again) == len(stored)
    con = duckdb.connect(example_env["TRACKSTAR_EXAMPLE_WAREHOUSE"], read_only=True)
    try:
        statuses = dict(
            con.execute("SELECT status, count(*) FROM trackstar_orders_write_results GROUP BY 1").fetchall()
        )
    finally:
        con.close()
    assert statuses == {"unchanged": len(valid)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webserver_serves_the_asset_graph_over_graphql(example_env):
    port = _free_port()
    webserver = Path(sys.executable).parent / "dagster-webserver"
    proc = subprocess.Popen(
        [str(webserver), "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        query = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
        deadline = time.monotonic() + 120
        data = None
        while time.monotonic() < deadline:
            try:
                r = httpx.post(url, json={"query": query}, timeout=10)
                nodes = r.json().get("data", {}).get("assetNodes") if r.status_code == 200 else None
                if nodes:
                    data = nodes
                    break
            except (httpx.HTTPError, json.JSONDecodeError):
                pass
            time.sleep(1)
        assert data, "webserver did not serve the asset graph"
        deps = {
            "/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in data
        }
        assert "warehouse/order_lines" in deps["orders_sync/payloads"]
        assert "trackstar/write_info" in deps["orders_sync/payloads"]
        assert "orders_sync/payloads" in deps["orders_sync/write_results"]
        assert "trackstar/integrations" in deps["trackstar/write_info"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_statuses_come_back_to_the_warehouse_after_the_backfill(example_env, sandbox):
    """orders_sync/order_statuses follows write_results; its job reads every order written into a table, then
    only what moved (the sandbox's orders step through statuses as its clock moves)."""
    defs = load_example_defs()
    graph = defs.resolve_asset_graph()
    statuses = dg.AssetKey(["orders_sync", "order_statuses"])
    assert dg.AssetKey(["orders_sync", "write_results"]) in graph.get(statuses).parent_keys
    assert defs.resolve_schedule_def("orders_sync_order_statuses_schedule").cron_schedule == "*/30 * * * *"
    instance = dg.DagsterInstance.get()
    assert _run_backfill(defs, instance).success
    written = sum(len(sandbox.records("orders", token=t)) for t in sandbox.tokens)
    job = defs.resolve_job_def("orders_sync_order_statuses_job")
    assert job.execute_in_process(instance=instance).success

    def table() -> dict[str, int]:
        with duckdb.connect(example_env["TRACKSTAR_EXAMPLE_WAREHOUSE"], read_only=True) as con:
            return dict(
                con.execute("SELECT status, count(*) FROM trackstar_order_statuses GROUP BY 1").fetchall()
            )

    assert table() == {"open": written}
    sandbox.set_progression(60)  # orders step every minute of the sandbox clock from here
    sandbox.advance_clock(6 * 60)
    assert job.execute_in_process(instance=instance).success
    assert table() == {"fulfilled": written}
