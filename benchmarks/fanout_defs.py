"""The code location of ``benchmarks/fanout.py``: a sync over 8 connections, loaded by a real daemon.

Two syncs over the same rows: ``fanout`` (``BackfillPolicy.multi_run(k)``: a backfill of D days becomes D/k
runs, each writing all 8 tokens) and ``fanout_single`` (``single_run``: the baseline, one run in one process).
Rows are generated deterministically per day and connection (``order_rows``), so every process (the code
server, each run, the benchmark counting what arrived) agrees on them without a shared file; no DuckDB (several
processes cannot share one file). Every setting comes from the environment the benchmark gives the daemon:

  TRACKSTAR_API_KEY, TRACKSTAR_BASE_URL          the sandbox
  TRACKSTAR_FANOUT_TOKEN_1 .. _8                 the connections' access tokens (EnvVar: never in run storage)
  TRACKSTAR_FANOUT_LEDGER_URL                    the shared PostgreSQL ledger (EnvVar)
  TRACKSTAR_FANOUT_START, _DAYS, _ORDERS        the partitions and the orders per connection (over all days)
  TRACKSTAR_FANOUT_RUN_DAYS                      k: days per run of the ``fanout`` backfill
  TRACKSTAR_FANOUT_PROBE_DIR                     where each run notes its process's CPU (``probe``)

``TRACKSTAR_FANOUT_BY_CONNECTION=1`` partitions ``fanout`` by day x connection (``partitions()``) with a
single-run backfill policy: Dagster makes a run per connection over all the days, each run writing one token;
``load_rows`` takes the slice's ``RowsRequest`` (its days x its connections).
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from trackstar_dagster import TrackstarConnection, TrackstarResource, TrackstarSync
from trackstar_dagster.mapping import MappingConfig
from trackstar_dagster.partitions import RowsRequest

N_CONNECTIONS = 8
CONNECTIONS = [f"fanout_{i}" for i in range(1, N_CONNECTIONS + 1)]
TOKEN_ENV = {name: f"TRACKSTAR_FANOUT_TOKEN_{i}" for i, name in enumerate(CONNECTIONS, start=1)}
INTEGRATION = "wms_sandbox"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


START = date.fromisoformat(os.environ.get("TRACKSTAR_FANOUT_START") or "2025-01-01")
DAYS = _env_int("TRACKSTAR_FANOUT_DAYS", 8)
ORDERS = _env_int("TRACKSTAR_FANOUT_ORDERS", 512)  # per connection, spread evenly over the days
RUN_DAYS = _env_int("TRACKSTAR_FANOUT_RUN_DAYS", 1)
BY_CONNECTION = os.environ.get("TRACKSTAR_FANOUT_BY_CONNECTION") == "1"


def day_keys() -> list[str]:
    return [(START + timedelta(days=d)).isoformat() for d in range(DAYS)]


def orders_on(day: str) -> int:
    """The orders per connection on ``day``: ``ORDERS`` spread over the days, the first days taking the rest."""
    index = (date.fromisoformat(day) - START).days
    return ORDERS // DAYS + (1 if index < ORDERS % DAYS else 0)


def order_number(day: str, connection: str, i: int) -> str:
    return f"FO-{day.replace('-', '')}-{connection.rsplit('_', 1)[1]}-{i:05d}"


def order_rows(days: list[str], connections: list[str] = CONNECTIONS) -> pd.DataFrame:
    """One row (one line item) per order: ``orders_on(day)`` per day and connection, the same every time."""
    return pair_rows([(day, connection) for day in days for connection in connections])


def pair_rows(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """The rows of the given (day, connection) pairs."""
    frames = []
    for day, connection in pairs:
        stamp, count = pd.Timestamp(day, tz="UTC"), orders_on(day)
        numbers = [order_number(day, connection, i) for i in range(count)]
        frames.append(
            pd.DataFrame(
                {
                    "order_id": [number[3:] for number in numbers],
                    "order_number": numbers,
                    "customer": connection,
                    "order_date": stamp + pd.to_timedelta(range(count), unit="s"),
                    "ship_name": "Fan Out",
                    "ship_address1": "1 Queue Street",
                    "ship_city": "Austin",
                    "ship_state": "TX",
                    "ship_postal_code": "78701",
                    "ship_country": "US",
                    "product_id": "prod-1",
                    "quantity": 1,
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def expected_order_numbers(days: list[str] | None = None) -> set[str]:
    return set(order_rows(days or day_keys())["order_number"])


def probe(context: dg.AssetExecutionContext, mark: str, **extra: object) -> None:
    """Note this run's process CPU (all its threads, from the OS) at ``mark``, for the benchmark's breakdown."""
    directory = os.environ.get("TRACKSTAR_FANOUT_PROBE_DIR")
    if not directory:
        return
    line = {"run_id": context.run_id, "pid": os.getpid(), "mark": mark, "cpu_s": time.process_time()}
    line |= {"t": time.time(), **extra}
    with (Path(directory) / f"{context.run_id}.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")


def selected_pairs(request: RowsRequest) -> list[tuple[str, str]]:
    """The slice's (day, connection) pairs: its time window's days x its connections (every one when the sync
    is not partitioned by connection)."""
    days = day_keys()
    if request.window is not None:
        start, end = pd.Timestamp(request.window.start), pd.Timestamp(request.window.end)
        days = [d for d in days if start <= pd.Timestamp(d, tz=start.tz) < end]
    connections = [c for c in (request.connections or CONNECTIONS) if c in CONNECTIONS]
    return [(day, connection) for day in days for connection in connections]


def load_rows(context: dg.AssetExecutionContext, request: RowsRequest) -> pd.DataFrame:
    pairs = selected_pairs(request)
    probe(context, "load", pairs=len(pairs))
    return pair_rows(pairs)


def sink(context: dg.AssetExecutionContext, kind: str, frame: pd.DataFrame) -> None:
    """No warehouse: the results stay in the IO manager's files; the benchmark's probe marks each step's end."""
    statuses = frame["status"].value_counts().to_dict() if "status" in frame.columns else {}
    failed = frame[frame["status"] == "failed"] if "status" in frame.columns else frame.iloc[:0]
    reasons = (
        failed["error"].astype(str).str[:120].value_counts().head(3).to_dict() if "error" in failed else {}
    )
    probe(
        context,
        kind,
        rows=len(frame),
        statuses={str(k): int(v) for k, v in statuses.items()},
        failures={str(k): int(v) for k, v in reasons.items()},
    )


MAPPING = MappingConfig(
    action="create_order",
    key="order_id",
    connection_column="customer",
    connection_values={name: name for name in CONNECTIONS},
    fields={
        "order_number": "order_number",
        "reference_id": "order_id",
        "ship_to_address.full_name": "ship_name",
        "ship_to_address.address1": "ship_address1",
        "ship_to_address.city": "ship_city",
        "ship_to_address.state": "ship_state",
        "ship_to_address.postal_code": "ship_postal_code",
        "ship_to_address.country": "ship_country",
        "line_items.product_id": "product_id",
        "line_items.quantity": "quantity",
    },
)


def partitions(by_connection: bool = False) -> dg.PartitionsDefinition:
    days = dg.DailyPartitionsDefinition(
        start_date=START.isoformat(), end_date=(START + timedelta(days=DAYS)).isoformat()
    )
    if not by_connection:
        return days
    # the library's time x connection dimensions (``trackstar_partitions`` makes them too; here bounded to the
    # benchmark's days, and static: the connections are known)
    return dg.MultiPartitionsDefinition(
        {"date": days, "connection": dg.StaticPartitionsDefinition(CONNECTIONS)}
    )


def sync(name: str, policy: dg.BackfillPolicy, by_connection: bool = False) -> TrackstarSync:
    return TrackstarSync(
        name=name,
        mapping=MAPPING,
        load_rows=load_rows,
        date_column="order_date",
        partitions_def=partitions(by_connection),
        backfill_policy=policy,
        results_sink=sink,
    )


# by connection: a single-run backfill of D days x 8 connections is 8 runs, one per connection (Dagster groups a
# multi-partition selection by the dimension with fewer selected keys); daily: multi_run(k), D/k runs
FANOUT = sync(
    "fanout",
    dg.BackfillPolicy.single_run() if BY_CONNECTION else dg.BackfillPolicy.multi_run(RUN_DAYS),
    BY_CONNECTION,
)
SINGLE = sync("fanout_single", dg.BackfillPolicy.single_run())
SYNCS = {s.name: s for s in (FANOUT, SINGLE)}


def trackstar() -> TrackstarResource:
    return TrackstarResource(
        api_key=dg.EnvVar("TRACKSTAR_API_KEY"),
        base_url=os.environ.get("TRACKSTAR_BASE_URL", "http://127.0.0.1:8787"),
        ledger_url=dg.EnvVar("TRACKSTAR_FANOUT_LEDGER_URL"),
        connections=[
            TrackstarConnection(name=name, access_token=dg.EnvVar(env), integration_name=INTEGRATION)
            for name, env in TOKEN_ENV.items()
        ],
    )


defs = dg.Definitions.merge(
    *(s.build_defs() for s in SYNCS.values()),
    # one process per run: the steps of a run share its client and its per-token budgets
    dg.Definitions(resources={"trackstar": trackstar()}, executor=dg.in_process_executor),
)
