"""Fan-out benchmark (issue 12 item 5): a backfill over 8 connections, spread over runs by Dagster itself.

A real deployment on this machine: a private PostgreSQL server (``tests/postgres.py``) holds the write ledger
every run shares (``TrackstarResource(ledger_url=...)``); the Trackstar sandbox runs in a subprocess at
500 ms +/- 100 ms latency and 50 writes/s per token; ``dagster-daemon`` (QueuedRunCoordinator,
``max_concurrent_runs``, a pool limit that lets every run write) and ``dagster-webserver`` load
``benchmarks/fanout_defs.py`` from a temporary DAGSTER_HOME. Each phase is one asset backfill launched the way
the UI launches it (GraphQL ``launchPartitionBackfill``); the daemon makes the runs, queues and launches them;
the benchmark only waits for the backfill to finish, then counts the sandbox's stored orders:

- baseline: ``fanout_single`` (``BackfillPolicy.single_run``): every day and token in ONE run, one process;
- fan-out:  ``fanout`` (``BackfillPolicy.multi_run(k)``): D/k runs, each writing all 8 tokens, at once.

The rate is timed from the first stored order to the last (the sandbox's ``created_date``), not from the runs'
wall clock. Per run: its start, first and last write, writes/s, and its process's CPU (noted by the run itself,
``fanout_defs.probe``). The sandbox is reset between phases. The last line is exactly:

    RESULT aggregate_share=<fan-out achieved / 400> duplicates=<n> lost=<n> runs=<n> baseline_share=<x>
           failed_first_pass=<n>

(on one line; duplicates and lost summed over both phases, after re-executing a backfill whose runs failed
from failure, once, as a user would: records a run reports failed (an answer lost on the way) are written by
the re-execution, and counted in ``failed_first_pass``; goals >= 0.85, 0, 0). The rate is the first pass's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package and tests/postgres.py, here and in every subprocess
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

LIMIT = 50.0  # Trackstar's writes/s per access token
LATENCY, JITTER = 0.4, 0.2  # 0.4 + uniform(0, 0.2): 500 ms +/- 100 ms


def parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def stored_orders(sb: Any, tokens: list[str]) -> list[tuple[str, float]]:
    """(order_number, created time) of every order the sandbox holds, over the given tokens."""
    out = []
    for token in tokens:
        out += [(r["order_number"], parse_ts(r["created_date"])) for r in sb.records("orders", token=token)]
    return out


def write_answers(log: Path, offset: int) -> tuple[dict[str, int], int]:
    """The sandbox's answers to order writes logged since ``offset`` (status -> count), and the new offset."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    found = re.findall(r"POST /wms/orders (\d{3}) ", text)
    return dict(Counter(found)), offset + len(text.encode())


def run_pairs(run: Any, days: list[str], connections: list[str]) -> set[tuple[str, str]]:
    """The (day, connection) pairs a run wrote, from its partition tags (a day, a day range, or day x connection)."""
    tags = run.tags

    def pairs(key: str) -> list[tuple[str, str]]:
        if "|" in key:  # a MultiPartitionKey: its dimensions' keys in the order of their names
            connection, day = key.split("|")
            return [(day, connection)]
        return [(key, c) for c in connections]

    if "dagster/partition" in tags:
        return set(pairs(tags["dagster/partition"]))
    lo, hi = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if lo is None or hi is None:
        return set()
    (day_lo, conn_lo), (day_hi, conn_hi) = pairs(lo)[0], pairs(hi)[-1]
    conns = connections if "|" not in lo else [c for c in connections if conn_lo <= c <= conn_hi]
    return {(d, c) for d in days if day_lo <= d <= day_hi for c in conns}


def pair_of(number: str) -> tuple[str, str]:
    """(day, connection) of an order number ``FO-YYYYMMDD-<connection index>-<n>``."""
    _, day, index, _ = number.split("-")
    return f"{day[:4]}-{day[4:6]}-{day[6:]}", f"fanout_{index}"


def probes(probe_dir: Path, run_id: str) -> dict[str, dict[str, Any]]:
    path = probe_dir / f"{run_id}.jsonl"
    if not path.exists():
        return {}
    return {line["mark"]: line for line in map(json.loads, path.read_text().splitlines())}


def analyse(label: str, instance: Any, backfill_id: str, status: str, orders: list[tuple[str, float]],
            expected: set[str], days: list[str], connections: list[str], probe_dir: Path) -> dict[str, Any]:  # fmt: skip
    """Print the phase's figures (per run, then in total) and return the totals."""
    from dagster import RunsFilter

    counts = Counter(n for n, _ in orders)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    lost = len(expected - set(counts))
    stray = len(set(counts) - expected)
    times = sorted(t for _, t in orders)
    span = (times[-1] - times[0]) if len(times) > 1 else 0.0
    rate = (len(orders) - 1) / span if span else 0.0
    records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
    records.sort(key=lambda r: r.start_time or 0)
    t0 = min([r.create_timestamp.timestamp() for r in records] or [time.time()])
    by_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
    for number, t in orders:
        by_pair[pair_of(number)].append(t)
    print(
        f"\n== {label}: backfill {backfill_id} {status}, {len(records)} runs (times in s from the backfill)"
    )
    print(
        "  run       status   keys  start  1st write  last write  writes  writes/s  cpu_s  write_cpu_ms/write"
    )
    cpu_total = 0.0
    for r in records:
        run = r.dagster_run
        keys = run_pairs(run, days, connections)
        mine = sorted(t for pair in keys for t in by_pair.get(pair, []))
        marks = probes(probe_dir, run.run_id)
        cpu = marks.get("write_results", marks.get("rejects", marks.get("load", {}))).get("cpu_s", 0.0)
        cpu_total += cpu
        write_cpu = (
            (marks["write_results"]["cpu_s"] - marks["rejects"]["cpu_s"]) * 1000 / max(1, len(mine))
            if {"write_results", "rejects"} <= set(marks)
            else float("nan")
        )
        wps = (len(mine) - 1) / (mine[-1] - mine[0]) if len(mine) > 1 else 0.0
        print(
            f"  {run.run_id[:8]}  {run.status.value[:7]:7}  {len(keys):4}  "
            f"{(r.start_time or t0) - t0:5.1f}  {mine[0] - t0 if mine else 0:9.1f}  "
            f"{mine[-1] - t0 if mine else 0:10.1f}  {len(mine):6}  {wps:8.1f}  {cpu:5.1f}  {write_cpu:8.2f}"
            + (f"  results {marks['write_results'].get('statuses')}" if "write_results" in marks else "")
            + (
                f" failures {marks['write_results']['failures']}"
                if marks.get("write_results", {}).get("failures")
                else ""
            ),
            flush=True,
        )
    n_tokens = len(connections)
    share = rate / (LIMIT * n_tokens)
    print(
        f"  {label}: {len(orders)} orders stored ({len(expected)} expected), duplicates {duplicates}, lost {lost}, "
        f"stray {stray}; first to last write {span:.1f} s: {rate:.1f} writes/s = {share:.3f} of "
        f"{LIMIT * n_tokens:.0f}/s; run processes' CPU {cpu_total:.1f} s "
        f"({cpu_total * 1000 / max(1, len(orders)):.2f} ms per order)",
        flush=True,
    )
    return {"share": share, "duplicates": duplicates, "lost": lost, "runs": len(records), "rate": rate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=3000, help="orders per connection (over all days)")
    parser.add_argument("--days", type=int, default=8, help="daily partitions in the backfill")
    parser.add_argument("--run-days", type=int, default=1, help="k of multi_run(k): days per fan-out run")
    parser.add_argument("--max-runs", type=int, default=8, help="the run queue's max_concurrent_runs")
    parser.add_argument(
        "--by-connection",
        action="store_true",
        help="fan-out partitioned by day x connection: a run per customer and day",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the single-run baseline")
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="re-execute a backfill with failed runs from failure, this often",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for each backfill")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="trackstar-fanout-"))
    home, probe_dir = work / "dagster_home", work / "probes"
    home.mkdir(parents=True, exist_ok=True)
    probe_dir.mkdir(exist_ok=True)
    settings = {
        "TRACKSTAR_FANOUT_DAYS": str(args.days),
        "TRACKSTAR_FANOUT_ORDERS": str(args.orders),
        "TRACKSTAR_FANOUT_RUN_DAYS": str(args.run_days),
        "TRACKSTAR_FANOUT_PROBE_DIR": str(probe_dir),
        "TRACKSTAR_FANOUT_BY_CONNECTION": "1" if args.by_connection else "",
    }
    os.environ.update(
        settings
    )  # before fanout_defs is imported: the same days and orders here as in the runs

    import fanout_defs as fd
    from _dagster_stack import (
        dagster_stack,
        instance_yaml,
        launch_backfill,
        retry_backfill,
        wait_backfill,
        workspace_yaml,
    )
    from dagster import DagsterInstance

    from tests.postgres import fresh_database, run_postgres
    from trackstar_dagster.sandbox.server import run_sandbox

    tokens = {name: f"fanout-token-{i}" for i, name in enumerate(fd.CONNECTIONS, start=1)}
    days, expected = fd.day_keys(), fd.expected_order_numbers()
    print(
        f"workdir {work}: {len(fd.CONNECTIONS)} connections x {args.orders} orders over {args.days} days; "
        f"fan-out {'day x connection' if args.by_connection else 'daily'} multi_run({args.run_days}), "
        f"max_concurrent_runs {args.max_runs}, pool limit {args.max_runs}; "
        f"sandbox {LATENCY + JITTER / 2:.1f} s latency, {LIMIT:.0f} writes/s per token",
        flush=True,
    )
    (home / "dagster.yaml").write_text(instance_yaml(args.max_runs, args.max_runs))
    workspace = home / "workspace.yaml"
    workspace.write_text(workspace_yaml(ROOT / "benchmarks" / "fanout_defs.py", "fanout"))

    totals: dict[str, dict[str, Any]] = {}
    with (
        run_postgres() as admin_url,
        fresh_database(admin_url, "fanout_ledger") as ledger_url,
        run_sandbox(
            connections={t: fd.INTEGRATION for t in tokens.values()},
            latency=LATENCY,
            jitter=JITTER,
            write_rate=LIMIT,
            read_rate=10.0,
            subprocess=True,
            log_file=work / "sandbox.log",
        ) as sb,
    ):
        env = {
            **os.environ,
            "TRACKSTAR_API_KEY": sb.api_key,
            "TRACKSTAR_BASE_URL": sb.base_url,
            "TRACKSTAR_FANOUT_LEDGER_URL": ledger_url,
            **{fd.TOKEN_ENV[name]: token for name, token in tokens.items()},
        }
        started = time.monotonic()
        with dagster_stack(home, workspace, env, work) as stack:
            print(
                f"daemon and webserver up, code location loaded in {time.monotonic() - started:.1f} s",
                flush=True,
            )
            instance = DagsterInstance.from_config(str(home))
            phases = [("fan-out", fd.FANOUT)] + ([] if args.no_baseline else [("baseline", fd.SINGLE)])
            offset = 0
            for label, sync in phases:
                _, offset = write_answers(work / "sandbox.log", offset)
                sb.reset()  # records and rate windows: each phase writes the same orders from scratch
                keys = [sync.payloads_key.path, sync.rejects_key.path, sync.results_key.path]
                partition_keys = sync.partitions_def.get_partition_keys()  # type: ignore[union-attr]
                backfill_id = launch_backfill(
                    stack.url, keys, partition_keys, title=f"fanout benchmark: {label}"
                )
                load0 = os.getloadavg()[0]
                print(
                    f"{label}: backfill {backfill_id} launched ({sync.name}: {len(partition_keys)} partitions)",
                    flush=True,
                )
                status = wait_backfill(instance, backfill_id, args.timeout)
                orders = stored_orders(sb, list(tokens.values()))
                answers, offset = write_answers(work / "sandbox.log", offset)
                print(
                    f"{label}: the sandbox answered order writes {answers} (status: count); machine load "
                    f"{load0:.1f} at launch, {os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} cores)",
                    flush=True,
                )
                totals[label] = analyse(
                    label, instance, backfill_id, status, orders, expected, days, fd.CONNECTIONS, probe_dir
                )
                totals[label]["lost_first_pass"] = totals[label]["lost"]
                for _ in range(args.retries):
                    if status != "COMPLETED_FAILED":
                        break
                    # what a user does with a backfill some of whose runs failed: re-execute it from failure
                    retry_id = retry_backfill(stack.url, backfill_id)
                    status = wait_backfill(instance, retry_id, args.timeout)
                    counts = Counter(n for n, _ in stored_orders(sb, list(tokens.values())))
                    totals[label]["duplicates"] = sum(c - 1 for c in counts.values() if c > 1)
                    totals[label]["lost"] = len(expected - set(counts))
                    print(
                        f"{label}: re-executed from failure (backfill {retry_id}, {status}): now "
                        f"{sum(counts.values())} orders stored, duplicates {totals[label]['duplicates']}, "
                        f"lost {totals[label]['lost']}",
                        flush=True,
                    )
                    backfill_id = retry_id
            print(f"\ndaemon/webserver CPU (with live children) {stack.cpu_s()}", flush=True)

    fan = totals["fan-out"]
    base = totals.get("baseline", {"share": 0.0, "duplicates": 0, "lost": 0, "rate": 0.0})
    print(
        f"\nfan-out {fan['rate']:.1f} writes/s over {fan['runs']} runs vs baseline (one run, one process) "
        f"{base['rate']:.1f} writes/s: x{fan['rate'] / base['rate'] if base['rate'] else 0:.2f}",
        flush=True,
    )
    print(
        f"RESULT aggregate_share={fan['share']:.3f} duplicates={fan['duplicates'] + base['duplicates']} "
        f"lost={fan['lost'] + base['lost']} runs={fan['runs']} baseline_share={base['share']:.3f} "
        f"failed_first_pass={fan['lost_first_pass'] + base.get('lost_first_pass', 0)}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
