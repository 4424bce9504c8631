"""The integrations catalog frame and the lenient JSON reader."""

from __future__ import annotations

import json

import pytest

from tests.schema import FIXTURES, load_catalog
from trackstar_dagster.schema import CATALOG_COLUMNS, CatalogModel, catalog_frame, parse_json_lenient


def test_seed_example_with_trailing_comma() -> None:
    text = (FIXTURES / "integrations-response.json.txt").read_text()
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    answer = parse_json_lenient(text)
    assert answer["data"][0]["available_actions"] == ["get_inventory", "get_products", "create_order"]
    frame = catalog_frame({"wms": answer})
    CatalogModel.validate(frame)
    row = frame.iloc[0].to_dict()
    assert row["integration_name"] == "Some WMS"
    assert row["display_name"] != row["display_name"]  # missing (NaN): older examples have no display_name
    assert (row["action"], row["method"], row["path"]) == ("create_order", "POST", "/wms/orders")
    assert row["required_base_schema_fields"] == ["line_items.product_id", "line_items.quantity"]
    assert row["integration_specific_fields"] == ["warehouse_id"]
    assert row["integration_specific_required"] == ["warehouse_id"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2, ]", [1, 2]),
        ('{"a": 1,\n}', {"a": 1}),
        ('{"a": ",]", "b": ", }"}', {"a": ",]", "b": ", }"}),
        ('{"a": "quote \\" ,]", "b": [1,],}', {"a": 'quote " ,]', "b": [1]}),
        (b'\xef\xbb\xbf{"a": [1,]}', {"a": [1]}),
    ],
)
def test_parse_json_lenient(text: str | bytes, expected: object) -> None:
    assert parse_json_lenient(text) == expected


def test_parse_json_lenient_still_refuses_broken_json() -> None:
    with pytest.raises(json.JSONDecodeError):
        parse_json_lenient('{"a": 1,, }')


def test_shared_catalog() -> None:
    frame = catalog_frame({"wms": load_catalog()})
    CatalogModel.validate(frame)
    assert list(frame.columns) == list(CATALOG_COLUMNS)
    assert frame["integration_name"].nunique() == 20
    assert len(frame) == sum(max(1, len(i["write_operations"])) for i in load_catalog()["data"])
    assert set(frame["integration_type"]) == {"wms"}
    row = frame[(frame["integration_name"] == "ongoing_wms") & (frame["action"] == "create_order")].iloc[0]
    assert row["display_name"]
    assert row["integration_specific_required"] == ["delivery_date", "warehouse_id"]
    assert "create_order" in row["available_actions"]
    for col in ("required_base_schema_fields", "available_actions"):
        assert all(isinstance(v, list) for v in frame[col])


def test_integrations_without_write_operations_and_missing_keys() -> None:
    answers = {
        "cart": {
            "data": [
                {
                    "integration_name": "shopify",
                    "display_name": "Shopify",
                    "write_operations": [],
                    "available_actions": ["get_orders"],
                }
            ]
        },
        "freight": [{"integration_name": "bare"}],
        "wms": {
            "data": [{"integration_name": "x", "write_operations": [{"url": "PUT /wms/orders/{order_id}"}]}]
        },
        "carrier": {"data": []},
    }
    frame = catalog_frame(answers)
    CatalogModel.validate(frame)
    assert len(frame) == 3
    shopify = frame[frame["integration_name"] == "shopify"].iloc[0]
    assert shopify["action"] != shopify["action"]  # missing
    assert shopify["available_actions"] == ["get_orders"] and shopify["required_base_schema_fields"] == []
    x = frame[frame["integration_name"] == "x"].iloc[0]
    assert (x["action"], x["method"], x["path"]) == ("update_order", "PUT", "/wms/orders/{order_id}")


def test_empty_catalog_has_columns() -> None:
    frame = catalog_frame({})
    assert list(frame.columns) == list(CATALOG_COLUMNS) and frame.empty
    CatalogModel.validate(frame)
