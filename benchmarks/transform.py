"""Benchmark: warehouse rows -> Trackstar bodies (map + clean + validate), against a naive reference.

Builds N line-item rows (``--rows``, default 1,000,000) with realistic dirt (nulls, null-like strings,
whitespace, NaN prices, bad quantities, unrouted customers), times ``build_payloads`` (data generation
excluded, best of 3), runs a naive reference (``iterrows``, per-row dicts, ``jsonschema`` per body) on a sample
of the same data, and measures peak memory of the fast path in a child process: its peak RSS minus its RSS
before the run, over the input frame's ``memory_usage(deep=True)``.

Logs go to stderr; the last line of stdout is exactly
``RESULT rows_per_s=<n> naive_rows_per_s=<n> ratio=<x> peak_mem_ratio=<x>``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import hashlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trackstar_dagster.base.nulls import drop_empty_body
from trackstar_dagster.mapping import MappingConfig, Target, build_payloads

WRITE_INFO = Path(__file__).resolve().parents[1] / "trackstar_dagster" / "sandbox" / "data" / "write-info"

CONFIG = """
action: create_order
key: order_id
connection_column: customer
connection_values: {ACME: acme, BETA: beta}
fields:
  order_number: order_id
  reference_id: order_ref
  service_level: service
  total_price: total_price
  ship_to_address.full_name: ship_name
  ship_to_address.company: ship_company
  ship_to_address.address1: ship_address1
  ship_to_address.address2: ship_address2
  ship_to_address.city: ship_city
  ship_to_address.state: ship_state
  ship_to_address.postal_code: ship_zip
  ship_to_address.country: ship_country
  line_items.product_id: product_id
  line_items.sku: sku
  line_items.quantity: quantity
  line_items.unit_price: unit_price
  line_items.discount_amount: discount
constants:
  invoice_currency_code: USD
connection_constants:
  beta: {ship_to_address.country: CA}
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    """N line-item rows, ~2.5 per order, with the dirt a warehouse table has."""
    rng = np.random.default_rng(seed)
    per_order = rng.integers(1, 5, size=rows // 2 + 10)
    order_of_row = np.repeat(np.arange(len(per_order)), per_order)[:rows]
    n_orders = int(order_of_row[-1]) + 1

    def pick(pool: list[Any], size: int, p: list[float] | None = None) -> np.ndarray:
        return np.asarray(pool, dtype=object)[rng.choice(len(pool), size=size, p=p)]

    def per_order_col(values: np.ndarray) -> np.ndarray:
        return values[order_of_row]

    names = [
        f"{first} {last}"
        for first in ("Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus")
        for last in ("Lee", "Ng", "Roe", "Poe")
    ]
    order_ids = np.array([f"ORD-{i:08d}" for i in range(n_orders)], dtype=object)
    customers = pick(["ACME", "BETA", "acme ", "ZZZ"], n_orders, [0.6, 0.35, 0.045, 0.005])
    customers[customers == "acme "] = "ACME"
    frame = pd.DataFrame(
        {
            "order_id": pd.Series(per_order_col(order_ids), dtype="str"),
            "order_ref": pd.Series(
                per_order_col(np.array([f"shop-{i}" for i in range(n_orders)], dtype=object)), dtype="str"
            ),
            "customer": pd.Series(per_order_col(customers), dtype="str"),
            "service": pd.Series(
                per_order_col(
                    pick(
                        ["Standard", "Express", " Standard ", "null", None],
                        n_orders,
                        [0.6, 0.2, 0.1, 0.05, 0.05],
                    )
                ),
                dtype="str",
            ),
            "total_price": per_order_col(
                np.where(rng.random(n_orders) < 0.03, np.nan, np.round(rng.gamma(2, 30, n_orders), 2))
            ),
            "ship_name": pd.Series(per_order_col(pick(names + ["N/A", ""], n_orders)), dtype="str"),
            "ship_company": pd.Series(
                per_order_col(
                    pick(
                        ["None Such Ltd", "Acme Corp", "NULL", "n/a", " ", None],
                        n_orders,
                        [0.2, 0.2, 0.1, 0.1, 0.1, 0.3],
                    )
                ),
                dtype="str",
            ),
            "ship_address1": pd.Series(
                per_order_col(np.array([f"{i % 9000 + 1} Main St" for i in range(n_orders)], dtype=object)),
                dtype="str",
            ),
            "ship_address2": pd.Series(
                per_order_col(
                    pick(["Apt 1", "Suite 200", None, "", "none"], n_orders, [0.15, 0.1, 0.55, 0.1, 0.1])
                ),
                dtype="str",
            ),
            "ship_city": pd.Series(
                per_order_col(
                    pick(
                        ["Boston", "Austin ", "Denver", "Reno", None], n_orders, [0.3, 0.3, 0.2, 0.195, 0.005]
                    )
                ),
                dtype="str",
            ),
            "ship_state": pd.Series(per_order_col(pick(["MA", "TX", "CO", "NV"], n_orders)), dtype="str"),
            "ship_zip": pd.Series(
                per_order_col(pick(["02134", "73301", " 80202", "89501"], n_orders)), dtype="str"
            ),
            "ship_country": pd.Series(
                per_order_col(pick(["US", "NA", None], n_orders, [0.9, 0.05, 0.05])), dtype="str"
            ),
            "product_id": pd.Series(pick([f"prod_{i}" for i in range(500)] + [None], rows), dtype="str"),
            "sku": pd.Series(pick([f"SKU-{i}" for i in range(500)] + ["null", None], rows), dtype="str"),
            "quantity": np.where(
                rng.random(rows) < 0.01,
                pick([0.0, -1.0, 2.5, np.nan], rows).astype(float),
                rng.integers(1, 6, rows).astype(float),
            ),
            "unit_price": np.where(rng.random(rows) < 0.03, np.nan, np.round(rng.gamma(2, 10, rows), 2)),
            "discount": np.where(rng.random(rows) < 0.7, np.nan, np.round(rng.random(rows) * 3, 2)),
            "warehouse_note": pd.Series(pick(["fragile", None], rows), dtype="str"),  # not mapped: ignored
        }
    )
    return frame


def targets() -> dict[str, Target]:
    doc = json.loads((WRITE_INFO / "wms_sandbox.json").read_text())
    return {
        "acme": Target("acme", "wms", "wms_sandbox", doc),
        "beta": Target("beta", "wms", "wms_sandbox", doc),
    }


def naive(frame: pd.DataFrame, config: MappingConfig, tgts: dict[str, Target]) -> int:
    """The reference a careful person writes first: iterrows, per-row dicts, jsonschema per body."""
    import jsonschema

    from trackstar_dagster.schema.openapi import normalise_schema

    validator = jsonschema.Draft202012Validator(
        normalise_schema(tgts["acme"].doc, config.action),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    orders: dict[tuple[str, str], dict[str, Any]] = {}
    bad: set[tuple[str, str]] = set()
    ints = {"line_items.quantity"}
    nums = {"total_price", "line_items.unit_price", "line_items.discount_amount"}
    for _, row in frame.iterrows():
        conn = config.connection_values.get(str(row[config.connection_column]).strip())
        key = str(row[config.key]).strip()
        if conn is None:
            continue
        rec = orders.setdefault((conn, key), {"header": {}, "items": []})
        item: dict[str, Any] = {}
        for path, col in config.fields.items():
            val = row[col]
            if isinstance(val, str):
                val = val.strip()
            if path in ints and isinstance(val, float) and not math.isnan(val):
                if val != int(val) or val < 1:
                    bad.add((conn, key))
                val = int(val)
            elif path in nums and isinstance(val, float) and not math.isnan(val) and val < 0:
                bad.add((conn, key))
            if path.startswith("line_items."):
                item[path.split(".", 1)[1]] = val
            else:
                node = rec["header"]
                parts = path.split(".")
                for p in parts[:-1]:
                    node = node.setdefault(p, {})
                node.setdefault(parts[-1], val)
        rec["items"].append(item)
    sent = 0
    for (conn, key), rec in orders.items():
        body = dict(rec["header"])
        body["line_items"] = rec["items"]
        body["invoice_currency_code"] = "USD"
        body["trackstar_tags"] = [f"tsd:create_order:{key}"]
        body = drop_empty_body(body)
        if (conn, key) in bad or list(validator.iter_errors(body)):
            continue
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        hashlib.sha256(text.encode()).hexdigest()
        sent += 1
    return sent


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child_memory(rows: int) -> None:
    """In a fresh process: peak RSS growth of one fast run over the input frame's deep memory."""
    frame = make_frame(rows)
    config = MappingConfig.from_yaml(CONFIG)
    tgts = targets()
    build_payloads(frame.head(2000), config, tgts)  # warm caches (validators, field specs)
    input_bytes = int(frame.memory_usage(deep=True).sum())
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _rss_kb("VmRSS") * 1024
    batch = build_payloads(frame, config, tgts)
    peak = _rss_kb("VmHWM") * 1024
    print(f"MEM input={input_bytes} before={before} peak={peak} payloads={len(batch.payloads)}")
    print(f"PEAK_MEM_RATIO {(peak - before) / input_bytes:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-rows", type=int, default=20_000)
    parser.add_argument("--smoke", action="store_true", help="5,000 rows, 1 repeat: a quick check")
    parser.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.repeats, args.naive_rows = 5_000, 1, 1_000
    if args.child_memory:
        child_memory(args.rows)
        return

    config = MappingConfig.from_yaml(CONFIG)
    tgts = targets()
    t0 = time.perf_counter()
    frame = make_frame(args.rows)
    log(
        f"generated {len(frame):,} rows in {time.perf_counter() - t0:.1f}s "
        f"({frame.memory_usage(deep=True).sum() / 1e6:.0f} MB deep)"
    )
    build_payloads(frame.head(2000), config, tgts)  # warm-up: compile validators once, as a long run would
    best = math.inf
    for i in range(args.repeats):
        t0 = time.perf_counter()
        batch = build_payloads(frame, config, tgts)
        dt = time.perf_counter() - t0
        best = min(best, dt)
        log(
            f"run {i + 1}: {dt:.2f}s, payloads={len(batch.payloads):,} "
            f"rejected records={batch.rejects[['connection', 'key']].drop_duplicates().shape[0]:,} "
            f"({len(batch.rejects):,} reasons)"
        )
        del batch
        gc.collect()
    rows_per_s = len(frame) / best

    sample = frame.head(args.naive_rows)
    t0 = time.perf_counter()
    sent = naive(sample, config, tgts)
    naive_dt = time.perf_counter() - t0
    naive_rows_per_s = len(sample) / naive_dt
    log(f"naive: {len(sample):,} rows in {naive_dt:.2f}s ({sent:,} bodies)")
    del frame, sample
    gc.collect()

    proc = subprocess.run(
        [sys.executable, __file__, "--child-memory", "--rows", str(args.rows)],
        capture_output=True,
        text=True,
        check=True,
    )
    log(proc.stdout.strip())
    if proc.stderr.strip():
        log(proc.stderr.strip())
    peak_ratio = float(proc.stdout.strip().splitlines()[-1].split()[-1])
    print(
        f"RESULT rows_per_s={rows_per_s:.0f} naive_rows_per_s={naive_rows_per_s:.0f} "
        f"ratio={rows_per_s / naive_rows_per_s:.1f} peak_mem_ratio={peak_ratio:.2f}"
    )


if __name__ == "__main__":
    main()
