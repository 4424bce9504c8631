"""Hand-built valid bodies and an httpx client factory for the sandbox tests."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from trackstar_dagster.sandbox.server import SandboxHandle

WMS = "sandbox-token-wms"
SHIPHERO = "sandbox-token-shiphero"
SHIPBOB = "sandbox-token-shipbob"

ADDRESS = {
    "full_name": "Ada Lovelace",
    "address1": "1 Main St",
    "city": "Austin",
    "state": "TX",
    "postal_code": "78701",
    "country": "US",
}

SANDBOX_ORDER: dict[str, Any] = {
    "order_number": "SO-1",
    "reference_id": "ref-1",
    "ship_to_address": {k: v for k, v in ADDRESS.items() if k != "full_name"},
    "line_items": [{"product_id": "prod-1", "quantity": 2, "unit_price": 9.5}],
    "trackstar_tags": ["batch-1", {"source": "dagster"}],
}
SHIPHERO_ORDER: dict[str, Any] = {
    "order_number": "SH-1",
    "ship_to_address": dict(ADDRESS),
    "line_items": [{"sku": "SKU-1", "quantity": 1, "unit_price": 12.0}],
}
SHIPBOB_ORDER: dict[str, Any] = {
    "reference_id": "SB-1",
    "ship_to_address": dict(ADDRESS),
    "line_items": [{"product_id": "123", "quantity": 3}],
}
SHIPHERO_INBOUND: dict[str, Any] = {
    "purchase_order_number": "PO-1",
    "expected_arrival_date": "2026-05-01T10:00:00Z",
    "shipping_price": 5.0,
    "warehouse_id": "shiphero-wh-1",
    "supplier_object": {"supplier_id": "SUP-1"},
    "line_items": [{"sku": "SKU-1", "expected_quantity": 10, "expected_weight": 1.5, "unit_cost": 2.0}],
}


def body(template: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of a template with top-level changes."""
    out = copy.deepcopy(template)
    out.update(changes)
    return out


def client(
    sb: SandboxHandle, token: str | None = WMS, api_key: str | None = None, **kwargs: Any
) -> httpx.Client:
    """An httpx client with the sandbox's API key (or ``api_key``) and an access token."""
    headers = {"x-trackstar-api-key": api_key or sb.api_key}
    if token:
        headers["x-trackstar-access-token"] = token
    kwargs.setdefault("timeout", 10.0)
    return httpx.Client(base_url=sb.base_url, headers=headers, **kwargs)
