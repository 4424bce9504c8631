"""The action table agrees with the write paths the sandbox's integrations document."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from trackstar_dagster.schema.openapi import operations
from trackstar_dagster.writer.actions import ACTIONS, spec_for


def _doc(name: str) -> dict:
    data = resources.files("trackstar_dagster.sandbox") / "data" / "write-info" / f"{name}.json"
    return json.loads(data.read_text())


def test_every_action_matches_wms_sandbox_write_info():
    ops = {(op.method, op.path.split("{")[0]) for op in operations(_doc("wms_sandbox"))}
    for spec in ACTIONS.values():
        assert spec.create in ops, spec.action
        assert spec.update is not None
        method, template = spec.update
        assert (method, template.split("{")[0]) in ops, spec.action
        assert spec.lookup_path == spec.resource_path


def test_actions_named_as_the_schema_names_them():
    names = {op.action for op in operations(_doc("wms_sandbox"))}
    assert set(ACTIONS) <= names
    assert {"create_order", "create_return", "create_product", "create_inbound_shipment"} <= set(ACTIONS)


def test_update_request_quotes_the_id():
    assert spec_for("create_order").update_request("ord 1/2") == ("PUT", "/wms/orders/ord%201%2F2")
    assert spec_for("create_inbound_shipment").update_request("x") == ("PUT", "/wms/inbound-shipments/x")
    assert spec_for("create_inbound_shipment").resource == "inbound-shipments"


def test_lookup_filters():
    orders = spec_for("create_order")
    assert orders.lookup_filters({"reference_id": "R1"}) == {"reference_id": "R1"}
    assert orders.lookup_filters({"reference_id": "  "}) is None
    assert orders.lookup_filters({}) is None
    assert spec_for("create_product").lookup_filters({"reference_id": "R1"}) is None  # products: by tag


def test_unknown_action():
    with pytest.raises(KeyError, match="create_order"):
        spec_for("create_spaceship")
