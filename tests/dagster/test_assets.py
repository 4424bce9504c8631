"""The catalog and write-info assets, materialized in a real Dagster instance against the sandbox."""

from __future__ import annotations

import copy
import json

import dagster as dg
import pytest

from trackstar_dagster import TrackstarConnection, TrackstarResource, build_trackstar_schema_assets
from trackstar_dagster.schema.openapi import find_operation, resolve

CATALOG_COLUMNS = {
    "integration_type",
    "integration_name",
    "display_name",
    "action",
    "method",
    "path",
    "required_base_schema_fields",
    "optional_base_schema_fields",
    "integration_specific_fields",
    "integration_specific_required",
    "available_actions",
}
FIELD_COLUMNS = {
    "integration_type",
    "integration_name",
    "connection",
    "action",
    "method",
    "path",
    "field",
    "type",
    "format",
    "nullable",
    "required",
    "required_effective",
    "enum",
    "description",
    "example",
}


@pytest.fixture
def resource(sandbox, tmp_path):
    return TrackstarResource(
        api_key=sandbox.api_key,
        base_url=sandbox.base_url,
        state_dir=str(tmp_path / "state"),
        connections=[
            TrackstarConnection(
                name="acme", access_token="sandbox-token-wms", integration_name="wms_sandbox"
            ),
            TrackstarConnection(
                name="globex", access_token="sandbox-token-shiphero", integration_name="shiphero"
            ),
        ],
    )


def materialize(instance, resource, selection=None):
    assets = build_trackstar_schema_assets(integration_types=["wms"])
    return dg.materialize(assets, instance=instance, resources={"trackstar": resource}, selection=selection)


def test_catalog_and_write_info_materialize_as_frames_with_metadata(instance, resource):
    result = materialize(instance, resource)
    assert result.success
    catalog = result.asset_value(dg.AssetKey(["trackstar", "integrations"]))
    fields = result.asset_value(dg.AssetKey(["trackstar", "write_info"]))
    assert set(catalog.columns) >= CATALOG_COLUMNS
    assert catalog["integration_name"].nunique() == 20
    assert set(fields.columns) >= FIELD_COLUMNS
    # one document per connection, fetched with its token (connection-specific enums)
    assert set(fields["connection"].dropna()) == {"acme", "globex"}
    assert set(fields["integration_name"]) == {"wms_sandbox", "shiphero"}
    city = fields[
        (fields["connection"] == "acme")
        & (fields["action"] == "create_order")
        & (fields["field"] == "ship_to_address.city")
    ]
    assert city["required_effective"].all()

    mats = {
        tuple(
            ev.event_specific_data.materialization.asset_key.path
        ): ev.event_specific_data.materialization.metadata
        for ev in result.get_asset_materialization_events()
    }
    meta = mats[("trackstar", "integrations")]
    assert meta["dagster/row_count"].value == len(catalog)
    assert isinstance(meta["dagster/column_schema"].value, dg.TableSchema)
    assert "shipbob" in meta["integrations_x_actions"].value
    checks = result.get_asset_check_evaluations()
    assert [c.check_name for c in checks] == ["schema_drift"] and checks[0].passed


def test_schema_drift_check_fails_when_a_field_becomes_required(instance, resource, sandbox):
    assert materialize(instance, resource).success
    from importlib import resources as ir

    doc = json.loads(
        (ir.files("trackstar_dagster.sandbox") / "data" / "write-info" / "wms_sandbox.json").read_text()
    )
    drifted = copy.deepcopy(doc)
    _, schema = resolve(drifted, find_operation(drifted, "create_order").schema)
    schema["required"] = sorted({*schema["required"], "reference_id"})
    sandbox.set_write_info("wms_sandbox", drifted)

    result = dg.materialize(
        build_trackstar_schema_assets(integration_types=["wms"]),
        instance=instance,
        resources={"trackstar": resource},
        raise_on_error=False,
    )
    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "schema_drift")
    assert not check.passed
    assert "reference_id" in (check.description or "")
    assert check.metadata["newly_required_count"].value >= 1


def test_no_secret_in_materialization_metadata_or_logs(instance, resource, sandbox):
    result = materialize(instance, resource)
    assert result.success
    text = " ".join(str(e) for e in instance.all_logs(result.run_id))
    for secret in (sandbox.api_key, "sandbox-token-wms", "sandbox-token-shiphero"):
        assert secret not in text
    assert "sandbox-token-wms" not in repr(resource)
