"""Benchmark: a single-run backfill of two years of daily partitions, dry run, in bounded memory.

1,000,000 orders (~2.5M line-item rows, ``benchmarks/transform.py``'s warehouse rows with their dirt, spread
over 730 days) go through a sync's real steps in a real Dagster materialize (one run, the 730-day range):
the payloads step (mapping, validation, rejects, stored per partition) and the write step as a dry run,
which reads a real ledger to classify every record new / unchanged / changed (a third of the orders are in
the ledger as written, a tenth with another body) and writes nothing. The sandbox serves the write-info.

Each measured run is a child process; its peak RSS is the OS's (``os.wait4``'s ``ru_maxrss``). The baseline
is the whole-range path in the same run: the same steps with the range as one slice and one chunk (no
``date_column``: ``load_rows`` called once for two years, built at once), at ``--baseline-orders`` (it
grows with the range; at full size it would take several GB), next to the chunked path at that size.

Logs go to stderr; the last line of stdout is exactly
``RESULT orders=<n> peak_rss_mb=<n> rows_per_s=<n> baseline_orders=<n> baseline_peak_rss_mb=<n>``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transform import CONFIG, make_frame  # noqa: E402  (a sibling script)

START = "2024-01-01"
DAYS = 730
NAME = "backfill"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def day_frame(day: int, orders_per_day: int) -> pd.DataFrame:
    """One day's rows: its own seed, its own order ids, an ``order_date`` within the day."""
    frame = make_frame(max(2, int(orders_per_day * 2.5)), seed=1000 + day)
    frame["order_id"] = f"D{day:03d}-" + frame["order_id"].astype(str)
    start = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=day)
    minutes = np.arange(len(frame)) * (1439 / max(len(frame), 1))
    frame["order_date"] = start + pd.to_timedelta(minutes.astype(int), unit="min")
    return frame


def mapping(namespace: str = NAME):
    from trackstar_dagster.mapping import MappingConfig

    return MappingConfig.from_yaml(CONFIG).model_copy(update={"tag_namespace": namespace})


def seed_ledger(url: str, orders_per_day: int) -> None:
    """A ledger holding part of the orders, as a real run leaves it: every 3rd written with this body,
    every 10th (of the rest) with another one."""
    from transform import targets

    from trackstar_dagster.mapping import build_payloads
    from trackstar_dagster.writer import Ledger
    from trackstar_dagster.writer.ledger_table import Outcome

    config, tgts = mapping(), targets()
    n = 0
    with Ledger(url) as ledger:
        for block in range(0, DAYS, 30):  # a month at a time: a build has a fixed cost
            days = range(block, min(block + 30, DAYS))
            frame = pd.concat([day_frame(d, orders_per_day) for d in days], ignore_index=True)
            payloads = build_payloads(frame, config, tgts).payloads
            outcomes = []
            for i, (conn, action, key, body_hash) in enumerate(
                zip(
                    payloads["connection"],
                    payloads["action"],
                    payloads["key"],
                    payloads["body_hash"],
                    strict=True,
                )
            ):
                if i % 3 == 0:
                    outcomes.append(Outcome(conn, action, key, "created", body_hash, f"ord_{block}_{i}"))
                elif i % 10 == 1:
                    outcomes.append(Outcome(conn, action, key, "created", "0" * 64, f"ord_{block}_{i}"))
            ledger.record_outcomes(outcomes, namespace=NAME)
            n += len(outcomes)
    log(f"seeded the ledger with {n:,} records")


def child(mode: str, orders_per_day: int, workdir: str) -> None:
    """One dry-run backfill of the 730-day range in one run, through the sync's steps."""
    import dagster as dg

    from trackstar_dagster import (
        TrackstarConnection,
        TrackstarResource,
        TrackstarSync,
        build_trackstar_schema_assets,
        build_trackstar_sync_assets,
    )
    from trackstar_dagster.sandbox.server import run_sandbox
    from trackstar_dagster.sync import trackstar_io_manager_resources

    daily = dg.DailyPartitionsDefinition(start_date=START)
    keys = daily.get_partition_keys()[:DAYS]
    first = pd.Timestamp(START, tz="UTC")

    def load_rows(context, window):
        lo = int((pd.Timestamp(window.start) - first) / pd.Timedelta(days=1))
        hi = int((pd.Timestamp(window.end) - first) / pd.Timedelta(days=1))
        days = [day_frame(d, orders_per_day) for d in range(max(lo, 0), min(hi, DAYS))]
        return pd.concat(days, ignore_index=True) if len(days) > 1 else days[0]

    sync = TrackstarSync(
        name=NAME,
        mapping=mapping(),
        load_rows=load_rows,
        date_column="order_date" if mode == "chunks" else None,
        partitions_def=daily,
        dry_run=True,
        max_reject_share=1.0,
    )
    with (
        run_sandbox(latency=0.0) as sb,
        dg.instance_for_test(temp_dir=str(Path(workdir) / "home")) as instance,
    ):
        resources = {
            "trackstar": TrackstarResource(
                api_key=sb.api_key,
                base_url=sb.base_url,
                state_dir=str(Path(workdir) / "state"),
                connections=[
                    TrackstarConnection(
                        name=c, access_token="sandbox-token-wms", integration_name="wms_sandbox"
                    )
                    for c in ("acme", "beta")
                ],
            ),
            **trackstar_io_manager_resources(str(Path(workdir) / "io" / mode)),
        }
        assets = [*build_trackstar_schema_assets(), *build_trackstar_sync_assets(sync)]
        t0 = time.perf_counter()
        result = dg.materialize(
            assets,
            instance=instance,
            resources=resources,
            selection=dg.AssetSelection.assets(sync.payloads_key, sync.rejects_key, sync.results_key),
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            },
        )
        seconds = time.perf_counter() - t0
        assert result.success
        rows_valid = next(c for c in result.get_asset_check_evaluations() if c.check_name == "rows_valid")
        figures = [m.metadata for m in result.asset_materializations_for_node(f"{NAME}__write_results")]
        would = {
            k: sum(int(f[f"dry_run_{k}"].value) for f in figures) for k in ("new", "unchanged", "changed")
        }
        print(
            "CHILD "
            + json.dumps(
                {
                    "rows": int(rows_valid.metadata["rows"].value),
                    "orders": int(rows_valid.metadata["records"].value),
                    "seconds": seconds,
                    "dry_run": int(sum(int(f["status_dry_run"].value) for f in figures)),
                    **would,
                }
            ),
            flush=True,
        )


def measure(mode: str, orders: int, workdir: str) -> dict:
    """Run one child; its figures and the OS's peak RSS of it."""
    per_day = max(1, orders // DAYS)
    cmd = [sys.executable, __file__, "--child", mode, "--orders", str(orders), "--workdir", workdir]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child failed ({proc.returncode})")
    figures = json.loads(next(line for line in out.splitlines() if line.startswith("CHILD "))[6:])
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    figures["rows_per_s"] = figures["rows"] / figures["seconds"]
    log(
        f"{mode:>6} {orders:>9,} orders/{per_day}/day: {figures['rows']:,} rows, {figures['orders']:,} records in "
        f"{figures['seconds']:.0f}s ({figures['rows_per_s']:,.0f} rows/s), peak RSS {figures['peak_rss_mb']:,.0f} MB; "
        f"dry run: {figures['new']:,} new, {figures['unchanged']:,} unchanged, {figures['changed']:,} changed"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--baseline-orders", type=int, default=200_000)
    parser.add_argument("--smoke", action="store_true", help="20,000 orders, baseline 10,000: a quick check")
    parser.add_argument("--child", choices=["chunks", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.orders, args.baseline_orders = 20_000, 10_000
    if args.child:
        child(args.child, max(1, args.orders // DAYS), args.workdir)
        return
    with tempfile.TemporaryDirectory(prefix="backfill-memory-") as tmp:
        runs = {}
        for label, mode, orders in (
            ("baseline", "whole", args.baseline_orders),
            ("small", "chunks", args.baseline_orders),
            ("full", "chunks", args.orders),
        ):
            workdir = str(Path(tmp) / label)
            (Path(workdir) / "state").mkdir(parents=True)
            (Path(workdir) / "home").mkdir()
            t0 = time.perf_counter()
            seed_ledger(f"sqlite:///{Path(workdir) / 'state' / 'ledger.sqlite'}", max(1, orders // DAYS))
            log(f"({label}: ledger seeded in {time.perf_counter() - t0:.0f}s, not measured)")
            runs[label] = measure(mode, orders, workdir)
    full, base, small = runs["full"], runs["baseline"], runs["small"]
    log(
        f"at {base['orders']:,} records: whole range {base['peak_rss_mb']:,.0f} MB vs chunks "
        f"{small['peak_rss_mb']:,.0f} MB; at {full['orders']:,}: chunks {full['peak_rss_mb']:,.0f} MB"
    )
    print(
        f"RESULT orders={full['orders']} peak_rss_mb={full['peak_rss_mb']:.0f} rows_per_s={full['rows_per_s']:.0f} "
        f"baseline_orders={base['orders']} baseline_peak_rss_mb={base['peak_rss_mb']:.0f} "
        f"chunks_at_baseline_peak_rss_mb={small['peak_rss_mb']:.0f}"
    )


if __name__ == "__main__":
    main()
