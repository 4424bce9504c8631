"""Writes: valid bodies per integration, every kind of 422, 501, 403, updates and cancel."""

from __future__ import annotations

import pytest

from tests.sandbox.helpers import (
    SANDBOX_ORDER,
    SHIPBOB,
    SHIPBOB_ORDER,
    SHIPHERO,
    SHIPHERO_INBOUND,
    SHIPHERO_ORDER,
    WMS,
    body,
    client,
)
from trackstar_dagster.sandbox.server import SandboxHandle
from trackstar_dagster.sandbox.state import ConnectionSpec


def _fields(r) -> dict[str, list[str]]:
    assert r.status_code == 422, r.text
    got = r.json()
    assert got["error"] == "Validation failed" and got["origin"] == "trackstar"
    return got["detail"]["json"]


@pytest.mark.parametrize(
    ("token", "template"), [(WMS, SANDBOX_ORDER), (SHIPHERO, SHIPHERO_ORDER), (SHIPBOB, SHIPBOB_ORDER)]
)
def test_valid_order_is_stored_and_readable(sandbox: SandboxHandle, token: str, template: dict) -> None:
    with client(sandbox, token=token) as c:
        r = c.post("/wms/orders", json=template)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["unused_fields"] == [] and got["id"] == got["data"]["id"]
        rec = got["data"]
        assert rec["status"] == "open"
        assert rec["trackstar_created_date"].endswith("Z") and rec["created_date"].endswith("Z")
        assert {k: rec[k] for k in template} == template
        assert c.get(f"/wms/orders/{got['id']}").json()["data"] == rec
    assert [x["id"] for x in sandbox.records("orders", token)] == [got["id"]]


def test_valid_inbound_shipment_with_supplier_object_branches(sandbox: SandboxHandle) -> None:
    with client(sandbox, token=SHIPHERO) as c:
        assert c.post("/wms/inbound-shipments", json=SHIPHERO_INBOUND).status_code == 200
        by_name = body(SHIPHERO_INBOUND, supplier_object={"supplier_name": "Acme"})
        assert c.post("/wms/inbound-shipments", json=by_name).status_code == 200
        for bad in ({"supplier_id": "S", "supplier_name": "Acme"}, {"other": "x"}, {"supplier_id": 5}):
            fields = _fields(
                c.post("/wms/inbound-shipments", json=body(SHIPHERO_INBOUND, supplier_object=bad))
            )
            assert "supplier_object" in fields, fields


def test_null_like_values_at_any_depth(sandbox: SandboxHandle) -> None:
    bad = body(SANDBOX_ORDER, reference_id="null")
    bad["ship_to_address"] = {**bad["ship_to_address"], "address2": ""}
    bad["line_items"] = [{"product_id": "p", "quantity": 1, "unit_price": None}]
    with client(sandbox) as c:
        fields = _fields(c.post("/wms/orders", json=bad))
    assert set(fields) == {"reference_id", "ship_to_address.address2", "line_items.0.unit_price"}


def test_missing_required_names_the_field(sandbox: SandboxHandle) -> None:
    bad = body(SANDBOX_ORDER)
    del bad["order_number"]
    bad["ship_to_address"] = {k: v for k, v in bad["ship_to_address"].items() if k != "city"}
    bad["line_items"] = [{"quantity": 1}]
    with client(sandbox) as c:
        fields = _fields(c.post("/wms/orders", json=bad))
    assert {"order_number", "ship_to_address.city", "line_items.0.product_id"} <= set(fields)
    assert all("required" in m[0].lower() for m in fields.values())


def test_wrong_type_enum_and_unknown_field(sandbox: SandboxHandle) -> None:
    with client(sandbox, token=SHIPHERO) as c:
        wrong_type = body(SHIPHERO_ORDER, line_items=[{"sku": "S", "quantity": "two", "unit_price": 1.0}])
        assert "line_items.0.quantity" in _fields(c.post("/wms/orders", json=wrong_type))
        unknown = body(SHIPHERO_ORDER, gift_wrap=True)
        fields = _fields(c.post("/wms/orders", json=unknown))
        assert list(fields) == ["gift_wrap"]
        bad_wh = body(SHIPHERO_INBOUND, warehouse_id="WH-NOT-MINE")
        fields = _fields(c.post("/wms/inbound-shipments", json=bad_wh))
        assert list(fields) == ["warehouse_id"] and "shiphero-wh-1" in fields["warehouse_id"][0]
        bad_unit = body(SHIPHERO_INBOUND)
        bad_unit["line_items"] = [{**bad_unit["line_items"][0], "expected_weight_unit": "stone"}]
        assert "line_items.0.expected_weight_unit" in _fields(c.post("/wms/inbound-shipments", json=bad_unit))
        bad_date = body(SHIPHERO_INBOUND, expected_arrival_date="next tuesday")
        assert "expected_arrival_date" in _fields(c.post("/wms/inbound-shipments", json=bad_date))
        assert _fields(c.post("/wms/orders", content=b"not json")) == {"_schema": ["Invalid JSON body."]}
        assert _fields(c.post("/wms/orders", json=["a list"])) == {
            "_schema": ["Invalid input type: the body must be a JSON object."]
        }
    assert sandbox.records("orders") == [] and sandbox.records("inbound-shipments") == []


def test_501_for_a_path_the_integration_lacks(sandbox: SandboxHandle) -> None:
    with client(sandbox, token=SHIPBOB) as c:
        r = c.post("/wms/products", json={"sku": "S", "name": "N"})
        assert r.status_code == 501
        assert r.json() == {
            "error": "Endpoint create_product is not implemented for ShipBob",
            "origin": "trackstar",
        }
        assert c.put("/wms/orders/abc", json={}).json()["error"].startswith("Endpoint update_order")


def test_403_for_a_disabled_action(sandbox_factory) -> None:
    sb = sandbox_factory(
        connections={"tok": ConnectionSpec("wms_sandbox", disabled_actions=("create_order",))}
    )
    with client(sb, token="tok") as c:
        r = c.post("/wms/orders", json=SANDBOX_ORDER)
        assert r.status_code == 403
        assert r.json()["error"] == "create_order is disabled for this connection"
        assert "create_order" not in c.get("/connections").json()["data"][0]["available_actions"]


def test_update_and_cancel(sandbox: SandboxHandle) -> None:
    with client(sandbox) as c:
        oid = c.post("/wms/orders", json=SANDBOX_ORDER).json()["id"]
        r = c.put(f"/wms/orders/{oid}", json={"service_level": "Express"})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["service_level"] == "Express" and r.json()["data"]["order_number"] == "SO-1"
        assert c.put("/wms/orders/nope", json={"service_level": "x"}).status_code == 404
        assert c.put(f"/wms/orders/{oid}", json={"bogus": 1}).status_code == 422
        r = c.put(f"/wms/orders/{oid}/cancel")
        assert r.status_code == 200 and r.json()["data"]["status"] == "cancelled"
        assert c.get(f"/wms/orders/{oid}").json()["data"]["status"] == "cancelled"


def test_other_resources_write_and_read(sandbox: SandboxHandle) -> None:
    with client(sandbox, token=SHIPHERO) as c:
        r = c.post("/wms/products", json={"sku": "SKU-9", "name": "Widget"})
        assert r.status_code == 200, r.text
        assert c.get("/wms/products").json()["data"][0]["sku"] == "SKU-9"
    with client(sandbox, token=SHIPBOB) as c:
        assert c.get("/wms/kits").status_code == 501  # shipbob has no kits
