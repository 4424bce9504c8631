"""``make demo``: the whole story in one command, on embedded defaults (DuckDB warehouse, local sandbox).

Starts a Trackstar sandbox, seeds the warehouse, materializes the catalog and write-info, adds the connections
to the sync's partitions (day x connection), backfills the last 30 days of every connection in one run, prints
what happened, runs the same backfill again (every order ``unchanged``), stops the sandbox and says how to open
the UI. Leaves no process running.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BACKFILL_DAYS = 30
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the summary is printed below


def log(message: str) -> None:
    print(message, flush=True)


def main() -> int:
    from trackstar_example.settings import DEMO_DIR, PROJECT_ROOT

    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    home = DEMO_DIR / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "example_project" / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)

    from trackstar_dagster.sandbox.server import run_sandbox

    with run_sandbox(
        subprocess=True,
        latency=0.0,
        log_file=str(DEMO_DIR / "sandbox.log"),
        state_file=str(DEMO_DIR / "sandbox.sqlite"),
    ) as sandbox:
        os.environ["TRACKSTAR_BASE_URL"] = sandbox.base_url
        log(f"Trackstar sandbox on {sandbox.base_url} (log: {DEMO_DIR / 'sandbox.log'})")
        return run_demo(sandbox)


def run_demo(sandbox) -> int:
    import dagster as dg

    from trackstar_example.settings import apply_sandbox_defaults, warehouse_path
    from trackstar_example.warehouse import seed_warehouse

    apply_sandbox_defaults()
    today = datetime.now(UTC).date()
    summary = seed_warehouse(warehouse_path(), end_date=today)
    log(f"Seeded warehouse {warehouse_path()}: {summary}")

    from trackstar_example.definitions import defs as load_defs

    defs = load_defs() if callable(load_defs) else load_defs
    instance = dg.DagsterInstance.get()

    schema_job = dg.define_asset_job("trackstar_schemas", selection=dg.AssetSelection.groups("trackstar"))
    schema_defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[schema_job]))
    result = schema_defs.resolve_job_def("trackstar_schemas").execute_in_process(
        instance=instance, run_config=QUIET
    )
    log(f"Catalog and write-info materialized: {'ok' if result.success else 'FAILED'}")
    if not result.success:
        return 1

    # the sync is partitioned by day x connection: one tick of its sensor adds the connections to its partitions
    from trackstar_dagster.sync import tick_connection_sensors

    tick_connection_sensors(defs, instance)
    connections = instance.get_dynamic_partitions("orders_sync_connections")
    log(f"Connections (a partition dimension of the sync): {', '.join(connections)}")

    start = (today - timedelta(days=BACKFILL_DAYS)).isoformat()
    end = (today - timedelta(days=1)).isoformat()
    job = defs.resolve_job_def("orders_sync_job")
    for attempt in ("first", "second"):
        t0 = time.monotonic()
        result = job.execute_in_process(
            instance=instance,
            run_config=QUIET,
            tags={
                # every connection x every day: the keys read <connection>|<day>
                "dagster/asset_partition_range_start": f"{connections[0]}|{start}",
                "dagster/asset_partition_range_end": f"{connections[-1]}|{end}",
                "trackstar/demo": attempt,
            },
            raise_on_error=False,
        )
        elapsed = time.monotonic() - t0
        log(
            f"\n== Backfill {start} .. {end} ({BACKFILL_DAYS} days x {len(connections)} connections, one run), "
            f"{attempt} time: "
            f"{'success' if result.success else 'FAILED'} in {elapsed:.1f}s"
        )
        print_summary(result)
        if not result.success:
            return 1

    stored = len(sandbox.records("orders"))
    log(f"\nThe sandbox holds {stored} orders (each written once).")
    if read_statuses_back(defs, instance, sandbox):
        return 1
    log(
        "\nTo see lineage, checks and the plots in the Dagster UI:\n"
        f"  DAGSTER_HOME={Path(os.environ['DAGSTER_HOME'])} .venv/bin/dagster dev -w workspace.yaml\n"
        "(for new runs, start the sandbox with the demo's orders first:\n"
        "  .venv/bin/trackstar-sandbox --port 8787 --state .demo/sandbox.sqlite)"
    )
    return 0


def read_statuses_back(defs, instance, sandbox) -> int:
    """orders_sync/order_statuses: the orders written, read back as the sandbox moves them (a minute a step)."""
    job = defs.resolve_job_def("orders_sync_order_statuses_job")
    sandbox.set_progression(60)
    for label, minutes in (("just written", 0), ("3 minutes later", 3), ("10 minutes later", 7)):
        if minutes:
            sandbox.advance_clock(minutes * 60)  # the sandbox's clock: no waiting
        result = job.execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False)
        if not result.success:
            log("Order statuses: FAILED")
            return 1
        meta = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
        log(f"Order statuses, {label}: {meta['status_counts'].value} -> trackstar_order_statuses")
    return 0


def print_summary(result) -> None:
    """The run's totals: the sum of each day's own figures (as the UI's per-partition plots show them)."""
    from trackstar_dagster.mapping.previews import top_reject_reasons

    totals: dict[str, dict[str, float]] = {}
    rates: dict[str, float] = {}
    rejects_key = None
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        name = mat.asset_key.path[-1]
        rejects_key = mat.asset_key if name == "rejects" else rejects_key
        for k, v in mat.metadata.items():
            value = getattr(v, "value", v)
            if k.startswith("status_") or k == "rejected_records":
                totals.setdefault(name, {})[k] = totals.get(name, {}).get(k, 0) + value
            elif k in ("writes_per_s", "latency_p50_s"):
                rates[k] = value
    statuses = {k.removeprefix("status_"): v for k, v in totals.get("write_results", {}).items() if v}
    log("  write results: " + ", ".join(f"{k}={v}" for k, v in sorted(statuses.items())))
    if rates.get("writes_per_s") and statuses.get("created"):
        log(f"  writes/s: {rates['writes_per_s']:.1f}  p50 latency: {rates.get('latency_p50_s', 0):.3f}s")
    log(f"  rejected records: {totals.get('rejects', {}).get('rejected_records', 0)}")
    if rejects_key is not None:
        top = top_reject_reasons(result.asset_value(rejects_key))
        log("  top reject reasons:\n" + "\n".join("    " + line for line in str(top).splitlines()[:8]))


if __name__ == "__main__":
    sys.exit(main())
