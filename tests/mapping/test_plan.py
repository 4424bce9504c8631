"""The plan on its own: schema groups per write-info document, header and item paths, before any row is read."""

from __future__ import annotations

import pytest

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.mapping import MappingConfig
from trackstar_dagster.mapping.plan import make_plan

from .conftest import ORDER_FIELDS, order_rows


def _routed(**kw) -> MappingConfig:
    return MappingConfig(
        key="order_id",
        connection_column="customer",
        connection_values={"ACME": "acme", "GLOBEX": "globex", "HERO": "hero"},
        fields=dict(ORDER_FIELDS),
        **kw,
    )


def test_connections_sharing_a_document_share_one_schema_group(targets):
    plan = make_plan(order_rows(1, 1), None, _routed(), targets)
    assert len(plan.groups) == 2
    assert plan.conn_group["acme"] == plan.conn_group["globex"] != plan.conn_group["hero"]
    assert [g.integration_name for g in plan.groups] == ["wms_sandbox", "shiphero"]


def test_the_items_array_is_found_and_paths_split_into_header_and_item(targets):
    plan = make_plan(order_rows(1, 1), None, _routed(), targets)
    assert plan.items_path == "line_items"
    assert plan.item_paths == ["line_items.product_id", "line_items.quantity", "line_items.unit_price"]
    assert "order_number" in plan.header_paths and not set(plan.header_paths) & set(plan.item_paths)


def test_constants_and_tags_are_answered_per_connection(targets):
    config = _routed(
        constants={"service_level": "ground"}, connection_constants={"globex": {"service_level": "air"}}
    )
    plan = make_plan(order_rows(1, 1), None, config, targets)
    assert plan.constants(config, "acme") == {"service_level": "ground"}
    assert plan.constants(config, "globex") == {"service_level": "air"}  # a connection's own win
    assert plan.constants(config, "hero") == {}  # its schema lacks the field: left out (unknown_fields: drop)
    assert plan.groups_lacking("service_level") == [plan.conn_group["hero"]]
    assert plan.tagged(config, "acme") is True
    assert plan.tagged(config.model_copy(update={"key_tag": False}), "acme") is False


def test_a_missing_column_is_a_config_error_before_any_row_is_read(targets):
    with pytest.raises(ConfigError, match="missing from the source table: city"):
        make_plan(order_rows(1, 1).drop(columns=["city"]), None, _routed(), targets)
