"""Shared fixtures for the rows layer: real write-info documents and a small mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from trackstar_dagster.mapping import MappingConfig, Target

WRITE_INFO = Path(__file__).resolve().parents[2] / "trackstar_dagster" / "sandbox" / "data" / "write-info"


def load_doc(name: str) -> dict:
    return json.loads((WRITE_INFO / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def sandbox_doc() -> dict:
    return load_doc("wms_sandbox")


@pytest.fixture(scope="session")
def shiphero_doc() -> dict:
    return load_doc("shiphero")


@pytest.fixture()
def targets(sandbox_doc: dict, shiphero_doc: dict) -> dict[str, Target]:
    return {
        "acme": Target("acme", "wms", "wms_sandbox", sandbox_doc),
        "globex": Target("globex", "wms", "wms_sandbox", sandbox_doc),
        "hero": Target("hero", "wms", "shiphero", shiphero_doc),
    }


ORDER_FIELDS = {
    "order_number": "order_id",
    "ship_to_address.full_name": "name",
    "ship_to_address.address1": "address1",
    "ship_to_address.city": "city",
    "ship_to_address.state": "state",
    "ship_to_address.postal_code": "zip",
    "ship_to_address.country": "country",
    "line_items.product_id": "product_id",
    "line_items.quantity": "qty",
    "line_items.unit_price": "price",
}


@pytest.fixture()
def config() -> MappingConfig:
    return MappingConfig(key="order_id", connection="acme", fields=dict(ORDER_FIELDS))


def order_rows(n_orders: int = 3, items: int = 2, **overrides: list) -> pd.DataFrame:
    """A clean one-row-per-line-item table."""
    rows = []
    for o in range(n_orders):
        for i in range(items):
            rows.append(
                {
                    "order_id": f"O{o}",
                    "name": "Ann Lee",
                    "address1": "1 Main St",
                    "city": "Boston",
                    "state": "MA",
                    "zip": "02134",
                    "country": "US",
                    "product_id": f"p{o}-{i}",
                    "qty": i + 1,
                    "price": 9.5,
                    "customer": "ACME",
                }
            )
    frame = pd.DataFrame(rows)
    for col, values in overrides.items():
        frame[col] = values
    return frame
