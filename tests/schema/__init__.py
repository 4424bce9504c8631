"""Shared data for the schema-engine tests: the published examples and hand-written documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "trackstar_dagster" / "sandbox" / "data"
WRITE_INFO_DIR = DATA / "write-info"
FIXTURES = ROOT / "tests" / "fixtures"


def load_write_info() -> dict[str, dict[str, Any]]:
    """integration name -> write-info document, for the 20 shared documents."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(WRITE_INFO_DIR.glob("*.json"))}


def load_catalog() -> dict[str, Any]:
    return json.loads((DATA / "catalog-wms.json").read_text())


PLACEHOLDER = "N/A - Connect an account to see options"


def wrap(
    schemas: dict[str, Any],
    root: str = "Root",
    path: str = "/wms/orders",
    method: str = "post",
    extra_paths: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A write-info document whose single write operation's body is ``#/components/schemas/{root}``."""
    paths = {
        path: {
            method: {
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{root}"}}}
                },
                "responses": {"200": {"description": "ok"}},
            }
        }
    }
    paths.update(extra_paths or {})
    return {"openapi": "3.1.0", "paths": paths, "components": {"schemas": schemas}}


def kitchen_sink() -> dict[str, Any]:
    """One document with every construct the engine must read."""
    return wrap(
        {
            "Root": {
                "type": "object",
                "x-vendor-extension": {"ignored": True},
                "properties": {
                    "order_number": {"type": "string", "maxLength": 20, "example": "SO-1"},
                    "note": {"type": ["string", "null"], "description": "nullable in the schema"},
                    "warehouse_id": {"type": "string", "enum": [PLACEHOLDER]},
                    "priority": {"type": "integer", "minimum": 1, "maximum": 10},
                    "ship_date": {"type": "string", "format": "date"},
                    "ship_after": {"type": "string", "format": "date-time"},
                    "phone": {"type": "string", "pattern": "^\\d{3}-\\d{4}$"},
                    "ship_to_address": {"$ref": "#/components/schemas/Address"},
                    "bill_to_address": {"$ref": "#/components/schemas/Address"},
                    "line_items": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"$ref": "#/components/schemas/LineItem"},
                    },
                    "matrix": {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"x": {"type": "integer"}},
                                "required": ["x"],
                                "additionalProperties": False,
                            },
                        },
                    },
                    "channel_object": {"allOf": [{"$ref": "#/components/schemas/ChannelSchema"}]},
                    "payment": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/Card"},
                            {"$ref": "#/components/schemas/Invoice"},
                        ]
                    },
                    "custom": {"type": "object", "additionalProperties": {"type": "string"}},
                    "measurements": {
                        "anyOf": [{"type": ["object", "null"]}, {"$ref": "#/components/schemas/Measurements"}]
                    },
                    "level1": {"$ref": "#/components/schemas/Level1"},
                    "tree": {"$ref": "#/components/schemas/TreeNode"},
                    "trackstar_tags": {"type": ["array", "null"], "items": {}},
                    "is_gift": {"type": "boolean"},
                    "total": {"type": ["number", "null"], "minimum": 0},
                },
                "required": ["order_number", "ship_to_address", "line_items"],
                "additionalProperties": False,
            },
            "Address": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "country": {"type": "string", "enum": ["US", "CA", "NA"]},
                    "address2": {"type": ["string", "null"]},
                },
                "required": ["city", "country"],
                "additionalProperties": False,
            },
            "LineItem": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1},
                    "unit_price": {"type": "number"},
                    "uom": {"type": "string", "enum": ["each", "case"]},
                },
                "required": ["sku", "quantity"],
                "additionalProperties": False,
            },
            "ChannelSchema": {
                "type": "object",
                "properties": {},
                "additionalProperties": False,
                "oneOf": [
                    {"$ref": "#/components/schemas/ChannelId"},
                    {"$ref": "#/components/schemas/ChannelName"},
                ],
                "discriminator": {
                    "propertyName": "type",
                    "mapping": {"id": "#/components/schemas/ChannelId"},
                },
            },
            "ChannelId": {
                "type": "object",
                "properties": {"channel_id": {"type": "string"}},
                "required": ["channel_id"],
                "additionalProperties": False,
            },
            "ChannelName": {
                "type": "object",
                "properties": {"channel_name": {"type": "string"}},
                "required": ["channel_name"],
                "additionalProperties": False,
            },
            "Card": {
                "type": "object",
                "properties": {"card_token": {"type": "string"}},
                "required": ["card_token"],
                "additionalProperties": False,
            },
            "Invoice": {
                "type": "object",
                "properties": {"invoice_terms": {"type": "string", "enum": ["net30", "net60"]}},
                "required": ["invoice_terms"],
                "additionalProperties": False,
            },
            "Measurements": {
                "type": "object",
                "properties": {"weight": {"type": "number"}},
                "required": ["weight"],
            },
            "Level1": {
                "type": "object",
                "properties": {"level2": {"$ref": "#/components/schemas/Level2"}},
                "required": ["level2"],
                "additionalProperties": False,
            },
            "Level2": {
                "type": "object",
                "properties": {"level3": {"$ref": "#/components/schemas/Level3"}},
                "required": ["level3"],
                "additionalProperties": False,
            },
            "Level3": {
                "type": "object",
                "properties": {"leaf": {"type": "string", "enum": ["a", "b"]}},
                "required": ["leaf"],
                "additionalProperties": False,
            },
            "TreeNode": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/components/schemas/TreeNode"}},
                    "parent": {"$ref": "#/components/schemas/TreeNode"},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
        }
    )


def kitchen_body() -> dict[str, Any]:
    """A valid body for ``kitchen_sink()``'s create_order."""
    return {
        "order_number": "SO-1",
        "note": "leave at door",
        "warehouse_id": "anything goes: placeholder enum",
        "priority": 3,
        "ship_date": "2024-05-01",
        "ship_after": "2024-05-01T10:00:00Z",
        "phone": "555-1234",
        "ship_to_address": {"city": "Windhoek", "country": "NA"},
        "line_items": [
            {"sku": "A", "quantity": 1, "unit_price": 2.5, "uom": "each"},
            {"sku": "B", "quantity": 2},
        ],
        "matrix": [[{"x": 1}, {"x": 2}], [{"x": 3}]],
        "channel_object": {"channel_id": "c1"},
        "payment": {"invoice_terms": "net30"},
        "custom": {"colour": "red"},
        "measurements": {"anything": 1},
        "level1": {"level2": {"level3": {"leaf": "a"}}},
        "tree": {
            "name": "root",
            "children": [{"name": "kid", "children": [{"name": "grandkid"}]}],
            "parent": {"name": "up"},
        },
        "trackstar_tags": ["t1", {"k": "v"}],
        "is_gift": False,
        "total": 0,
    }
