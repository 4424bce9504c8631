"""The write-info reader: operations, action names, refs, types, placeholders, the normalised schema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.schema import FIXTURES, PLACEHOLDER, kitchen_body, kitchen_sink, load_write_info, wrap
from trackstar_dagster.schema import (
    action_for,
    find_operation,
    is_one_of_pattern,
    is_placeholder_enum,
    json_types,
    normalise_schema,
    operations,
    resolve,
)


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("POST", "/wms/orders", "create_order"),
        ("PUT", "/wms/orders/{order_id}", "update_order"),
        ("PATCH", "/wms/orders/{order_id}", "update_order"),
        ("PUT", "/wms/orders/{order_id}/cancel", "cancel_order"),
        ("POST", "/wms/inbound-shipments", "create_inbound_shipment"),
        ("PUT", "/wms/inbound-shipments/{id}/receive", "receive_inbound_shipment"),
        ("post", "/wms/returns", "create_return"),
        ("POST", "/wms/inventory", "create_inventory"),
        ("POST", "/freight/shipments", "create_shipment"),
    ],
)
def test_action_for(method: str, path: str, action: str) -> None:
    assert action_for(method, path) == action


def test_seed_write_info_example() -> None:
    doc = json.loads((FIXTURES / "write-info-ongoing-returns.json").read_text())
    ops = operations(doc)
    assert [(o.action, o.method, o.path) for o in ops] == [("create_return", "POST", "/wms/returns")]
    name, node = resolve(doc, ops[0].schema)
    assert name == "CreatewmsReturnOngoingSchema" and node["type"] == "object"


def test_every_shared_document_has_operations_and_normalises() -> None:
    for name, doc in load_write_info().items():
        ops = operations(doc)
        assert ops, name
        for op in ops:
            schema = normalise_schema(doc, op.action)
            jsonschema.Draft202012Validator.check_schema(schema)
            text = json.dumps(schema)
            assert '"null"' not in text, (name, op.action)
            assert PLACEHOLDER.casefold() not in text.casefold()


def test_find_operation_names_available_actions() -> None:
    with pytest.raises(KeyError, match="create_order"):
        find_operation(wrap({"Root": {"type": "object"}}, path="/wms/returns"), "create_order")


def test_resolve_cycle_and_missing() -> None:
    doc = wrap({"A": {"$ref": "#/components/schemas/B"}, "B": {"$ref": "#/components/schemas/A"}}, root="A")
    with pytest.raises(ValueError, match="cycle"):
        resolve(doc, {"$ref": "#/components/schemas/A"})
    with pytest.raises(KeyError):
        resolve(doc, {"$ref": "#/components/schemas/Nope"})


def test_json_types_and_placeholder() -> None:
    assert json_types({"type": ["string", "null"]}) == (["string"], True)
    assert json_types({"type": "integer", "nullable": True}) == (["integer"], True)
    assert json_types({}) == ([], False)
    assert is_placeholder_enum([PLACEHOLDER])
    assert not is_placeholder_enum(["warehouse_1"])
    assert not is_placeholder_enum([])


def test_one_of_pattern_is_rewritten() -> None:
    doc = kitchen_sink()
    channel = doc["components"]["schemas"]["ChannelSchema"]
    assert is_one_of_pattern(channel)
    assert is_one_of_pattern({"additionalProperties": False, "oneOf": []})
    assert not is_one_of_pattern({"properties": {"a": {}}, "additionalProperties": False, "oneOf": []})
    schema = normalise_schema(doc, "create_order")
    assert "properties" not in schema["$defs"]["ChannelSchema"]
    assert "additionalProperties" not in schema["$defs"]["ChannelSchema"]
    assert "enum" not in schema["$defs"]["Root"]["properties"]["warehouse_id"]
    assert schema["$defs"]["Root"]["properties"]["note"]["type"] == "string"
    jsonschema.Draft202012Validator(schema).validate(kitchen_body())
