"""Benchmark: one build over hundreds of connections routed by a column that names them (open routing).

Each connection's target holds its own copy of its integration's write-info document (what the sync loads:
one snapshot per connection). The baseline in the same run is the same build with every connection sharing
one document object; the two should cost the same, since connections whose documents are equal share one
schema group. ``--connections`` (default 300), ``--orders`` per connection (default 2, two lines each).

The last line of stdout is ``RESULT connections=<n> rows=<n> build_s=<s> shared_doc_build_s=<s> ratio=<x>``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from importlib import resources

import pandas as pd

from trackstar_dagster.mapping import MappingConfig, Target, build_payloads

MAPPING = MappingConfig.model_validate(
    {
        "action": "create_order",
        "key": "order_id",
        "connection_column": "customer",
        "fields": {
            "order_number": "order_id",
            "ship_to_address.full_name": "name",
            "ship_to_address.address1": "street",
            "ship_to_address.city": "city",
            "ship_to_address.state": "state",
            "ship_to_address.postal_code": "zip",
            "ship_to_address.country": "country",
            "line_items.product_id": "product",
            "line_items.quantity": "qty",
        },
    }
)


def frame(names: list[str], orders: int) -> pd.DataFrame:
    rows = [
        {
            "order_id": f"{n}-{o}",
            "customer": n,
            "name": "Ada",
            "street": "1 Main St",
            "city": "Reno",
            "state": "NV",
            "zip": "89501",
            "country": "US",
            "product": f"p{line}",
            "qty": line,
        }
        for n in names
        for o in range(orders)
        for line in (1, 2)
    ]
    return pd.DataFrame(rows)


def timed(rows: pd.DataFrame, targets: dict[str, Target]) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        batch = build_payloads(rows, MAPPING, targets)
        best = min(best, time.perf_counter() - t0)
        assert batch.rejected_records == 0, batch.rejects.head()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--orders", type=int, default=2)
    args = parser.parse_args()
    doc_path = resources.files("trackstar_dagster.sandbox") / "data" / "write-info" / "wms_sandbox.json"
    doc = json.loads(doc_path.read_text())
    names = [f"customer_{i:04d}" for i in range(args.connections)]
    rows = frame(names, args.orders)
    own = {n: Target(n, "wms", "wms_sandbox", copy.deepcopy(doc)) for n in names}
    shared = {n: Target(n, "wms", "wms_sandbox", doc) for n in names}
    base = timed(rows, shared)
    built = timed(rows, own)
    print(
        f"{len(rows)} rows, {len(names)} connections: own documents {built:.3f} s, one shared {base:.3f} s",
        file=sys.stderr,
    )
    print(
        f"RESULT connections={len(names)} rows={len(rows)} build_s={built:.3f} "
        f"shared_doc_build_s={base:.3f} ratio={built / base:.2f}"
    )


if __name__ == "__main__":
    main()
