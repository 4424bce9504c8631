"""Schema drift between two snapshots of write-info documents."""

from __future__ import annotations

import copy
import json

from tests.schema import PLACEHOLDER, load_write_info
from trackstar_dagster.schema import DriftReport, schema_drift

DOCS = load_write_info()


def _order_schema(doc: dict) -> dict:
    return doc["components"]["schemas"]["CreatewmsOrder--WMS_Sandbox--"]


def test_no_drift() -> None:
    report = schema_drift(DOCS, copy.deepcopy(DOCS))
    assert not report.has_changes and not report.has_breaking
    assert report.to_markdown() == "No schema drift."
    assert report.to_metadata()["added_count"] == 0


def test_new_required_field_is_breaking() -> None:
    new = copy.deepcopy(DOCS["wms_sandbox"])
    schema = _order_schema(new)
    schema["properties"]["gift_wrap"] = {"type": "string"}
    schema["required"].append("gift_wrap")
    schema["properties"]["gift_note"] = {"type": "string"}
    report = schema_drift({"wms_sandbox": DOCS["wms_sandbox"]}, {"wms_sandbox": new})
    assert report.has_breaking
    assert report.newly_required == [
        {"integration": "wms_sandbox", "action": "create_order", "field": "gift_wrap", "was": "absent"}
    ]
    assert {a["field"] for a in report.added} == {"gift_wrap", "gift_note"}
    assert "gift_wrap" in report.to_markdown() and "breaking" in report.to_markdown()


def test_optional_turned_required_nested() -> None:
    new = copy.deepcopy(DOCS["wms_sandbox"])
    address = new["components"]["schemas"]["SandboxCreateOrderShipToAddress"]
    assert "full_name" not in address["required"]
    address["required"].append("full_name")
    report = schema_drift({"wms_sandbox": DOCS["wms_sandbox"]}, {"wms_sandbox": new})
    assert [(r["action"], r["field"], r["was"]) for r in report.newly_required] == [
        ("create_order", "ship_to_address.full_name", "optional")
    ]
    assert not report.added and not report.removed


def test_removed_fields_and_enum_changes() -> None:
    old = copy.deepcopy(DOCS["wms_sandbox"])
    _order_schema(old)["properties"]["warehouse_id"] = {"type": "string", "enum": [PLACEHOLDER]}
    _order_schema(old)["properties"]["service"] = {"type": "string", "enum": ["std", "exp"]}
    new = copy.deepcopy(old)
    del _order_schema(new)["properties"]["reference_id"]
    _order_schema(new)["properties"]["warehouse_id"]["enum"] = ["wh_1", "wh_2"]
    _order_schema(new)["properties"]["service"]["enum"] = ["std", "overnight"]
    report = schema_drift({"wms_sandbox": old}, {"wms_sandbox": new})
    assert not report.has_breaking
    assert [(r["field"], r["action"]) for r in report.removed] == [("reference_id", "create_order")]
    changes = {r["field"]: (r["values_added"], r["values_removed"]) for r in report.enum_changes}
    assert changes == {"warehouse_id": (["wh_1", "wh_2"], []), "service": (["overnight"], ["exp"])}
    meta = report.to_metadata()
    json.dumps(meta)
    assert meta["removed_count"] == 1 and meta["enum_changes_count"] == 2
    assert "overnight" in report.to_markdown()


def test_new_action_and_new_integration_are_not_breaking() -> None:
    old = copy.deepcopy(DOCS["wms_sandbox"])
    del old["paths"]["/wms/inbound-shipments"]
    report = schema_drift(
        {"wms_sandbox": old}, {"wms_sandbox": DOCS["wms_sandbox"], "shiphero": DOCS["shiphero"]}
    )
    assert not report.has_breaking
    assert any(r["action"] == "create_inbound_shipment" and r["required_effective"] for r in report.added)
    assert report.integrations_added == ["shiphero"]
    report = schema_drift({"wms_sandbox": old, "ffe": DOCS["ffe"]}, {"wms_sandbox": old})
    assert report.integrations_removed == ["ffe"] and not report.removed


def test_report_type() -> None:
    report = schema_drift({}, {})
    assert isinstance(report, DriftReport)
    assert not report.has_changes and report.to_markdown() == "No schema drift."
