"""What one tick of a changes sensor costs: two years x 4 customers (2,920 day x connection partitions).

A DuckDB warehouse of ``--orders`` orders (2 lines each) per customer and day, every partition marked written
with its fingerprint (runless materializations in a temporary Dagster instance, as the payloads step would
leave them); then one tick with nothing changed, and one after two orders changed. Baseline, in the same run:
reading every row back (``SELECT *``, what re-running everything to find changes would at least cost).

    python benchmarks/changes_probe.py [--days 730] [--orders 50]

Ends with one ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from trackstar_dagster import MappingConfig, TrackstarResource, TrackstarSync
from trackstar_dagster.changes import FINGERPRINT_KEY, ChangesSensor, ProbeRequest
from trackstar_dagster.sql import sql_row_loader
from trackstar_dagster.sync import trackstar_partitions
from trackstar_dagster.sync.changes_sensor import build_changes_sensor, evaluate_changes, sensor_probe

START = date(2024, 1, 1)
CUSTOMERS = {"alpha": "conn_a", "beta": "conn_b", "gamma": "conn_c", "delta": "conn_d"}


def seed(path: str, days: int, orders: int) -> int:
    con = duckdb.connect(path)
    con.execute(
        f"""CREATE TABLE order_lines AS
        SELECT c.customer || '-' || d.i || '-' || o.n AS order_id, c.customer,
               TIMESTAMP '{START.isoformat()}' + d.i * INTERVAL 1 DAY + o.n * INTERVAL 1 MINUTE AS order_date,
               TIMESTAMP '{START.isoformat()}' + d.i * INTERVAL 1 DAY + o.n * INTERVAL 1 MINUTE AS updated_at,
               'Reno' AS city, l.line AS line
        FROM range({days}) d(i), range({orders}) o(n), range(2) l(line),
             (VALUES {", ".join(f"('{c}')" for c in CUSTOMERS)}) c(customer)"""
    )
    (n,) = con.execute("SELECT count(*) FROM order_lines").fetchone()
    con.close()
    return int(n)


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--orders", type=int, default=50)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    db = str(tmp / "w.duckdb")
    rows = seed(db, args.days, args.orders)
    mapping = MappingConfig.model_validate(
        {
            "action": "create_order",
            "key": "order_id",
            "connection_column": "customer",
            "connection_values": CUSTOMERS,
            "fields": {"order_number": "order_id", "ship_to_address.city": "city"},
        }
    )
    end = START + timedelta(days=args.days)
    sync = TrackstarSync(
        name="bench",
        mapping=mapping,
        load_rows=sql_row_loader("order_lines", "order_date", "duckdb", mapping),
        date_column="order_date",
        partitions=trackstar_partitions(
            START, by_connection=True, connections=sorted(CUSTOMERS.values()), include_unrouted=False
        ),
        extra_resource_keys=frozenset({"duckdb"}),
        changes_sensor=ChangesSensor("updated_at"),
    )
    resources = {
        "duckdb": DuckDBResource(database=db),
        "trackstar": TrackstarResource(api_key="unused", state_dir=str(tmp / "state")),
    }
    probe = sensor_probe(sync)
    assert sync.partitions_def is not None
    request = ProbeRequest(
        window=dg.TimeWindow(pd.Timestamp(START, tz="UTC"), pd.Timestamp(end, tz="UTC")),
        partitions_def=sync.partitions_def,
        mapping=mapping,
        date_column="order_date",
        updated_column="updated_at",
    )
    build_changes_sensor(sync)  # what definitions.py adds: builds
    (tmp / "home").mkdir()
    with (
        dg.instance_for_test(temp_dir=str(tmp / "home")) as instance,
        dg.build_sensor_context(instance=instance, resources=resources) as ctx,
    ):
        t_probe, probed = timed(lambda: probe(ctx, request))
        assert isinstance(probed, dict) and len(probed) == args.days * len(CUSTOMERS), len(probed)
        for key, fp in probed.items():  # every partition written, with the fingerprint its run stored
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    sync.results_key, partition=key, metadata={FINGERPRINT_KEY: fp.to_json()}
                )
            )
        t_quiet, quiet = timed(lambda: evaluate_changes(sync, probe, ctx))
        assert isinstance(quiet, dg.SkipReason), quiet
        con = duckdb.connect(db)
        con.execute(
            "UPDATE order_lines SET city = 'Sparks', updated_at = updated_at + INTERVAL 2 DAY "
            "WHERE order_id IN ('beta-100-3', 'delta-500-7')"
        )
        con.close()
        t_changed, changed = timed(lambda: evaluate_changes(sync, probe, ctx))
        assert isinstance(changed, dg.SensorResult)
        asked = [
            r.partition_key or r.tags.get("dagster/asset_partition_range_start")
            for r in changed.run_requests or []
        ]
        assert len(asked) == 2, asked

    def read_all() -> int:
        con = duckdb.connect(db, read_only=True)
        n = len(con.execute("SELECT * FROM order_lines").df())
        con.close()
        return n

    t_all, _ = timed(read_all)
    partitions = args.days * len(CUSTOMERS)
    print(f"rows {rows:,} in {partitions:,} day x connection partitions")
    print(f"probe (one GROUP BY, placed in partitions): {t_probe * 1000:.0f} ms")
    print(f"tick, nothing changed (stored fingerprints + probe): {t_quiet * 1000:.0f} ms")
    print(f"tick, 2 orders changed: {t_changed * 1000:.0f} ms -> asked for {asked}")
    print(f"baseline, every row read back (SELECT *): {t_all * 1000:.0f} ms")
    print(
        f"RESULT rows={rows} partitions={partitions} probe_ms={t_probe * 1000:.0f} tick_ms={t_quiet * 1000:.0f} "
        f"tick_changed_ms={t_changed * 1000:.0f} read_all_ms={t_all * 1000:.0f} asked={len(asked)}"
    )


if __name__ == "__main__":
    main()
