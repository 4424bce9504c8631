"""``write_info_fields``: every field at every level, on the shared documents and hand-written ones."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.schema import FIXTURES, kitchen_sink, load_catalog, load_write_info, wrap
from trackstar_dagster.schema import (
    FIELD_COLUMNS,
    WriteInfoFieldsModel,
    catalog_frame,
    empty_fields_frame,
    required_fields,
    write_info_fields,
)

DOCS = load_write_info()


def _rows(frame: pd.DataFrame, action: str = "create_order") -> dict[str, dict]:
    sub = frame[(frame["action"] == action) & frame["branch"].isna()]
    return {r["field"]: r for r in sub.to_dict("records")}


def _row(frame: pd.DataFrame, field: str, branch: str | None = None) -> dict:
    sub = frame[frame["field"] == field]
    sub = sub[sub["branch"].isna()] if branch is None else sub[sub["branch"] == branch]
    assert len(sub) == 1, (field, branch, sub)
    return sub.iloc[0].to_dict()


def test_twenty_shared_documents_parse_and_validate() -> None:
    assert len(DOCS) == 20
    for name, doc in DOCS.items():
        frame = write_info_fields(doc, "wms", name)
        assert list(frame.columns) == list(FIELD_COLUMNS)
        assert len(frame) > 0
        WriteInfoFieldsModel.validate(frame)
        for col in ("integration_type", "field", "type", "description", "example", "branch"):
            assert pd.api.types.is_string_dtype(frame[col]), col
        for col in ("nullable", "required", "required_effective"):
            assert frame[col].dtype == bool
        assert frame.duplicated(["action", "field", "branch"]).sum() == 0, name
        examples = frame["example"].dropna()
        for text in examples:
            json.loads(text)


def test_seed_write_info_example() -> None:
    doc = json.loads((FIXTURES / "write-info-ongoing-returns.json").read_text())
    frame = write_info_fields(doc, "wms", "ongoing_wms")
    WriteInfoFieldsModel.validate(frame)
    assert set(frame["action"]) == {"create_return"}
    assert "line_items" in set(frame["field"])
    assert any(f.startswith("line_items.") for f in frame["field"])


def test_catalog_required_fields_are_required_effective() -> None:
    """The catalog is a subset of write-info (ffe, infoplus and leanafy require more than it says)."""
    cat = catalog_frame({"wms": load_catalog()})
    stricter = set()
    checked = 0
    for row in cat[cat["action"] == "create_order"].to_dict("records"):
        frame = write_info_fields(DOCS[row["integration_name"]], "wms", row["integration_name"])
        eff = set(frame[(frame["action"] == "create_order") & frame["required_effective"]]["field"])
        wanted = set(required_fields(row))
        assert wanted <= eff, (row["integration_name"], wanted - eff)
        if eff - wanted:
            stricter.add(row["integration_name"])
        checked += 1
    assert checked == 17
    assert {"ffe", "infoplus", "leanafy"} <= stricter


def test_nested_and_array_fields_are_flattened() -> None:
    frame = write_info_fields(DOCS["wms_sandbox"], "wms", "wms_sandbox")
    rows = _rows(frame)
    assert rows["ship_to_address"]["type"] == "object"
    assert rows["ship_to_address.city"]["required_effective"]
    assert rows["line_items"]["type"] == "array"
    assert rows["line_items.product_id"]["required_effective"]
    assert rows["trackstar_tags"]["nullable"] and rows["trackstar_tags"]["type"] == "array"
    assert set(frame["action"]) >= {"create_order", "update_order", "create_return"}
    assert set(frame.loc[frame["action"] == "update_order", "method"]) == {"PUT"}


def test_kitchen_sink_constructs() -> None:
    frame = write_info_fields(kitchen_sink(), "wms", "kitchen")
    WriteInfoFieldsModel.validate(frame)
    # refs three levels deep, with enums on the nested leaf
    leaf = _row(frame, "level1.level2.level3.leaf")
    assert leaf["required"] and not leaf["required_effective"]  # level1 itself is optional
    assert leaf["enum"] == ["a", "b"]
    # a repeated ref gives both copies
    assert _row(frame, "ship_to_address.city")["required_effective"]
    assert not _row(frame, "bill_to_address.city")["required_effective"]
    assert _row(frame, "ship_to_address.country")["enum"] == ["US", "CA", "NA"]
    # type array with null
    note = _row(frame, "note")
    assert note["type"] == "string" and note["nullable"]
    assert not _row(frame, "order_number")["nullable"]
    # placeholder enum -> empty list
    assert _row(frame, "warehouse_id")["enum"] == []
    # arrays of objects, enum on a nested array field
    assert _row(frame, "line_items.uom")["enum"] == ["each", "case"]
    assert _row(frame, "line_items.sku")["required_effective"]
    # array of arrays flattens under the outer array's name
    assert _row(frame, "matrix")["type"] == "array"
    assert _row(frame, "matrix.x")["required"]
    # the channel_object pattern: the branches' fields, marked
    assert _row(frame, "channel_object")["type"] == "object"
    cid = _row(frame, "channel_object.channel_id", "ChannelId")
    assert cid["required"] and not cid["required_effective"]
    _row(frame, "channel_object.channel_name", "ChannelName")
    # plain oneOf branches
    assert _row(frame, "payment.invoice_terms", "Invoice")["enum"] == ["net30", "net60"]
    _row(frame, "payment.card_token", "Card")
    assert _row(frame, "payment")["type"] == "object"
    # anyOf with a nullable branch
    measurements = _row(frame, "measurements")
    assert measurements["nullable"] and measurements["type"] == "object"
    _row(frame, "measurements.weight", "Measurements")
    # additionalProperties schema
    assert _row(frame, "custom.*")["type"] == "string"
    # formats, examples, description
    assert _row(frame, "ship_date")["format"] == "date"
    assert _row(frame, "ship_after")["format"] == "date-time"
    assert _row(frame, "order_number")["example"] == '"SO-1"'
    assert _row(frame, "note")["description"] == "nullable in the schema"
    assert pd.isna(_row(frame, "priority")["example"])


def test_ref_cycle_stops_without_hanging() -> None:
    frame = write_info_fields(kitchen_sink(), "wms", "kitchen")
    tree = set(frame.loc[frame["field"].str.startswith("tree"), "field"])
    assert tree == {"tree", "tree.name", "tree.children", "tree.parent"}
    assert _row(frame, "tree.children")["type"] == "array"
    assert _row(frame, "tree.parent")["type"] == "object"


def test_pure_ref_cycle_and_missing_ref_are_tolerated() -> None:
    doc = wrap(
        {
            "Root": {
                "type": "object",
                "properties": {
                    "loop": {"$ref": "#/components/schemas/A"},
                    "missing": {"$ref": "#/components/schemas/Nope"},
                    "self": {"$ref": "#/components/schemas/Root"},
                    "all": {
                        "allOf": [{"$ref": "#/components/schemas/B"}, {"$ref": "#/components/schemas/C"}]
                    },
                },
                "required": ["all"],
            },
            "A": {"$ref": "#/components/schemas/A2"},
            "A2": {"$ref": "#/components/schemas/A"},
            "B": {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]},
            "C": {"type": "object", "properties": {"c": {"type": "integer"}}},
        }
    )
    frame = write_info_fields(doc, "wms", "x")
    assert set(frame["field"]) == {"loop", "missing", "self", "all", "all.b", "all.c"}
    assert _row(frame, "all.b", "B")["required_effective"]  # allOf branches all apply


def test_empty_and_operationless_documents() -> None:
    frame = write_info_fields({"openapi": "3.1.0", "paths": {}}, "wms", "none")
    assert frame.empty and list(frame.columns) == list(FIELD_COLUMNS)
    assert frame.dtypes.equals(empty_fields_frame().dtypes)
    WriteInfoFieldsModel.validate(frame)


@pytest.mark.parametrize("name", ["shiphero", "extensiv_3pl_central"])
def test_real_channel_object_branches(name: str) -> None:
    frame = write_info_fields(DOCS[name], "wms", name)
    fields = set(frame.loc[frame["action"] == "create_order", "field"])
    if name == "extensiv_3pl_central":
        assert {"channel_object.channel_id", "channel_object.channel_name"} <= fields
