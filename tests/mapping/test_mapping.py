"""Mapping rows to bodies: config, routing, constants, rejects, keys and tags."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.keys import key_tag
from trackstar_dagster.mapping import MappingConfig, Target, build_payloads
from trackstar_dagster.schema.validator import body_validator

from .conftest import ORDER_FIELDS, load_doc, order_rows

YAML = """
action: create_order
key: order_id
connection_column: customer
connection_values:
  ACME: acme
  GLOBEX: globex
fields:
  order_number: order_id
  ship_to_address.full_name: name
  ship_to_address.address1: address1
  ship_to_address.city: city
  ship_to_address.state: state
  ship_to_address.postal_code: zip
  ship_to_address.country: country
  line_items.product_id: product_id
  line_items.quantity: qty
constants:
  invoice_currency_code: USD
connection_constants:
  globex:
    invoice_currency_code: EUR
    ship_to_address.country: DE
"""


def bodies(batch) -> dict[str, dict]:
    return {k: json.loads(b) for k, b in zip(batch.payloads["key"], batch.payloads["body"], strict=True)}


def test_config_loads_from_yaml_text_and_file(tmp_path):
    cfg = MappingConfig.from_yaml(YAML)
    assert cfg.key_columns == ["order_id"] and cfg.action == "create_order" and cfg.key_tag
    path = tmp_path / "mapping.yaml"
    path.write_text(YAML)
    assert MappingConfig.from_yaml(path) == cfg
    assert MappingConfig.from_yaml(str(path)) == cfg


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError):
        MappingConfig.from_yaml("key: k\nfields: {a: b}\n")  # no connection
    with pytest.raises(ConfigError):
        MappingConfig.from_yaml("key: k\nconnection: a\nconnection_column: c\nfields: {a: b}\n")


class ExplodingFrame(pd.DataFrame):
    """A frame that fails the test if any row is read."""

    @property
    def _constructor(self):
        return ExplodingFrame

    def __getitem__(self, key):
        raise AssertionError("a row was read")


def test_a_config_naming_a_missing_column_fails_before_any_row_is_read(targets, config):
    frame = ExplodingFrame(order_rows(1, 1).drop(columns=["city", "zip"]))
    with pytest.raises(ConfigError, match="city") as info:
        build_payloads(frame, config, targets)
    assert "zip" in str(info.value)


def test_unmapped_columns_are_ignored(targets, config):
    frame = order_rows(1, 1)
    frame["internal_note"] = "do not send"
    batch = build_payloads(frame, config, targets)
    assert "do not send" not in batch.payloads["body"].iloc[0]


def test_unknown_connection_is_a_config_error(targets):
    cfg = MappingConfig(key="order_id", connection="nobody", fields=dict(ORDER_FIELDS))
    with pytest.raises(ConfigError, match="nobody"):
        build_payloads(order_rows(1, 1), cfg, targets)


def test_one_body_per_key_with_one_item_per_row(targets, config):
    batch = build_payloads(order_rows(3, 2), config, targets)
    assert list(batch.payloads["key"]) == ["O0", "O1", "O2"]
    body = bodies(batch)["O1"]
    assert body["line_items"] == [
        {"product_id": "p1-0", "quantity": 1, "unit_price": 9.5},
        {"product_id": "p1-1", "quantity": 2, "unit_price": 9.5},
    ]
    assert body["ship_to_address"]["postal_code"] == "02134"
    assert list(batch.payloads["source_rows"].iloc[1]) == [2, 3]
    assert (batch.payloads["action"] == "create_order").all()


def test_body_is_compact_sorted_json_and_hash_is_its_sha256(targets, config):
    batch = build_payloads(order_rows(1, 2), config, targets)
    text = batch.payloads["body"].iloc[0]
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert batch.payloads["body_hash"].iloc[0] == hashlib.sha256(text.encode()).hexdigest()


def test_every_body_carries_its_key_tag(targets, config):
    batch = build_payloads(order_rows(2, 1), config, targets)
    for key, body in bodies(batch).items():
        assert body["trackstar_tags"] == [key_tag("create_order", key)] == [f"tsd:create_order:{key}"]


def test_key_tag_is_short_and_stable_for_long_keys():
    for ns in (None, "nightly"):
        tag = key_tag("create_order", "x" * 500, ns)
        assert len(tag) <= 255 and tag == key_tag("create_order", "x" * 500, ns)
        assert tag != key_tag("create_order", "x" * 499, ns)


def test_key_tag_can_be_switched_off(targets):
    cfg = MappingConfig(key="order_id", connection="acme", fields=dict(ORDER_FIELDS), key_tag=False)
    batch = build_payloads(order_rows(1, 1), cfg, targets)
    assert "trackstar_tags" not in json.loads(batch.payloads["body"].iloc[0])


def test_key_tag_is_appended_to_constant_tags(targets):
    cfg = MappingConfig(
        key="order_id",
        connection="acme",
        fields=dict(ORDER_FIELDS),
        constants={"trackstar_tags": ["nightly"]},
    )
    batch = build_payloads(order_rows(1, 1), cfg, targets)
    assert json.loads(batch.payloads["body"].iloc[0])["trackstar_tags"] == ["nightly", "tsd:create_order:O0"]


def test_a_bad_row_rejects_its_whole_order_with_a_reason_naming_the_field(targets, config):
    frame = order_rows(3, 2)
    frame["qty"] = frame["qty"].astype(float)
    frame.loc[3, "qty"] = 2.5  # second item of O1
    batch = build_payloads(frame, config, targets)
    assert list(batch.payloads["key"]) == ["O0", "O2"]
    rej = batch.rejects
    assert set(rej["key"]) == {"O1"}
    row = rej.iloc[0]
    assert row["field"] == "line_items.quantity" and "line_items.quantity" in row["reason"]
    assert row["value"] == "2.5" and list(row["source_rows"]) == [2, 3]
    assert len(bodies(batch)["O0"]["line_items"]) == 2


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("qty", 0, "line_items.quantity"),
        ("qty", -1, "line_items.quantity"),
        ("price", -3.0, "line_items.unit_price"),
        ("product_id", None, "line_items.product_id"),
        ("city", "null", "ship_to_address.city"),
        ("qty", "lots", "line_items.quantity"),
    ],
)
def test_bad_values_reject_only_their_order(targets, config, column, value, field):
    frame = order_rows(3, 2)
    frame[column] = frame[column].astype(object)
    frame.loc[[2, 3] if field.startswith("ship_to") else 2, column] = value
    batch = build_payloads(frame, config, targets)
    assert list(batch.payloads["key"]) == ["O0", "O2"]
    assert set(batch.rejects["key"]) == {"O1"}
    assert field in set(batch.rejects["field"])
    assert all(field in r for r in batch.rejects.loc[batch.rejects["field"] == field, "reason"])


def test_conflicting_header_values_reject_the_record(targets, config):
    frame = order_rows(2, 2)
    frame.loc[1, "city"] = "Austin"
    batch = build_payloads(frame, config, targets)
    assert list(batch.payloads["key"]) == ["O1"]
    rej = batch.rejects.iloc[0]
    assert rej["key"] == "O0" and rej["field"] == "ship_to_address.city" and "disagree" in rej["reason"]


def test_header_values_agree_after_cleaning_and_nulls_do_not_conflict(targets, config):
    frame = order_rows(1, 3)
    frame["city"] = frame["city"].astype(object)
    frame.loc[0, "city"] = None
    frame.loc[1, "city"] = " Boston "
    batch = build_payloads(frame, config, targets)
    assert not len(batch.rejects)
    assert bodies(batch)["O0"]["ship_to_address"]["city"] == "Boston"


def test_rows_routed_by_a_connection_column_get_that_connections_constants(targets):
    cfg = MappingConfig.from_yaml(YAML)
    frame = order_rows(
        4, 1, customer=["ACME", "GLOBEX", " ACME ", "GLOBEX"], country=["US", None, "US", "FR"]
    )
    batch = build_payloads(frame, cfg, targets)
    got = dict(zip(batch.payloads["key"], batch.payloads["connection"], strict=True))
    assert got == {"O0": "acme", "O1": "globex", "O2": "acme", "O3": "globex"}
    b = bodies(batch)
    assert b["O0"]["invoice_currency_code"] == "USD"
    assert b["O1"]["invoice_currency_code"] == "EUR"
    assert b["O1"]["ship_to_address"]["country"] == "DE"  # constant fills the empty value
    assert b["O3"]["ship_to_address"]["country"] == "FR"  # a mapped value wins over the constant


def test_unmapped_routing_values_reject_the_record(targets):
    cfg = MappingConfig.from_yaml(YAML)
    frame = order_rows(3, 1, customer=["ACME", "INITECH", None])
    batch = build_payloads(frame, cfg, targets)
    assert list(batch.payloads["key"]) == ["O0"]
    assert set(batch.rejects["key"]) == {"O1", "O2"}
    assert (batch.rejects["field"] == "customer").all()
    assert batch.rejects["connection"].isna().all()


def test_same_key_for_two_connections_is_two_records(targets):
    cfg = MappingConfig.from_yaml(YAML)
    frame = order_rows(1, 2, customer=["ACME", "GLOBEX"])
    batch = build_payloads(frame, cfg, targets)
    assert sorted(batch.payloads["connection"]) == ["acme", "globex"]


def test_null_keys_are_rejected(targets, config):
    frame = order_rows(2, 1)
    frame.loc[0, "order_id"] = " "
    batch = build_payloads(frame, config, targets)
    assert list(batch.payloads["key"]) == ["O1"]
    assert batch.rejects["reason"].iloc[0] == "record key is null or empty"


def test_multi_column_keys(targets):
    cfg = MappingConfig(key=["order_id", "shop"], connection="acme", fields=dict(ORDER_FIELDS))
    frame = order_rows(1, 2, shop=["s1", "s2"])
    batch = build_payloads(frame, cfg, targets)
    assert sorted(batch.payloads["key"]) == ["O0|s1", "O0|s2"]


def test_orders_and_items_from_two_tables_joined_on_the_key(targets, config):
    orders = order_rows(3, 1).drop(columns=["product_id", "qty", "price"])
    items = pd.DataFrame(
        {
            "order_id": ["O0", "O0", "O2", "O1"],
            "product_id": ["a", "b", "c", "d"],
            "qty": [1, 2, 3, 4],
            "price": [1.0, 2.0, 3.0, 4.0],
        }
    )
    batch = build_payloads(orders, config, targets, items=items)
    b = bodies(batch)
    assert [i["product_id"] for i in b["O0"]["line_items"]] == ["a", "b"]
    assert b["O1"]["line_items"] == [{"product_id": "d", "quantity": 4, "unit_price": 4.0}]
    assert list(batch.payloads.set_index("key").loc["O2", "source_rows"]) == [2]


ACME_HERO = {"connection_column": "customer", "connection_values": {"ACME": "acme", "HERO": "hero"}}


def test_a_field_the_integration_does_not_accept_is_left_out_and_listed(targets):
    fields = {**ORDER_FIELDS, "line_items.warehouse_id": "wh"}  # shiphero's items have it, the sandbox's not
    cfg = MappingConfig(key="order_id", **ACME_HERO, fields=fields)
    batch = build_payloads(order_rows(1, 1, wh=["w1"]), cfg, targets)
    assert len(batch.payloads) == 1 and not len(batch.rejects)
    assert "warehouse_id" not in batch.payloads["body"].iloc[0]
    assert batch.dropped_fields["acme"] == ["line_items.warehouse_id"]


def test_a_field_the_integration_does_not_accept_rejects_when_asked(targets):
    fields = {**ORDER_FIELDS, "line_items.warehouse_id": "wh"}
    cfg = MappingConfig(key="order_id", **ACME_HERO, fields=fields, unknown_fields="reject")
    batch = build_payloads(order_rows(1, 1, wh=["w1"]), cfg, targets)
    assert not len(batch.payloads)
    assert "warehouse_id" in batch.rejects["field"].iloc[0]


def test_a_field_no_integration_accepts_is_a_config_error(targets):
    cfg = MappingConfig(
        key="order_id", connection="acme", fields={**ORDER_FIELDS, "line_items.colour": "colour"}
    )
    with pytest.raises(ConfigError, match="line_items.colour"):
        build_payloads(order_rows(1, 1, colour=["red"]), cfg, targets)


def test_one_table_feeds_integrations_with_different_schemas(targets):
    """A 3PL's one table: each connection's bodies keep only what its own integration accepts."""

    fields = {**ORDER_FIELDS, "line_items.sku": "sku", "packing_note": "note", "channel": "chan"}
    frame = order_rows(4, 2, sku=["s"] * 8, note=["fragile"] * 8, chan=["web"] * 8)
    frame["customer"] = ["a", "a", "b", "b", "a", "a", "c", "c"]
    cfg = MappingConfig(
        key="order_id",
        connection_column="customer",
        connection_values={"a": "acme", "b": "acme2", "c": "hero"},
        fields=fields,
    )
    targets = {**targets, "acme2": Target("acme2", "wms", "wms_sandbox", targets["acme"].doc)}
    batch = build_payloads(frame, cfg, targets)
    assert len(batch.payloads) == 4 and not len(batch.rejects)
    for conn, text in zip(batch.payloads["connection"], batch.payloads["body"], strict=True):
        body = json.loads(text)
        assert body_validator(targets[conn].doc, "create_order")(body) == []
        assert ("packing_note" in body) == (conn == "hero") and ("channel" in body) == (conn != "hero")


def test_required_fields_missing_from_the_mapping_reject_with_the_field(targets):
    fields = {k: v for k, v in ORDER_FIELDS.items() if k != "order_number"}
    cfg = MappingConfig(key="order_id", connection="acme", fields=fields)
    batch = build_payloads(order_rows(2, 1), cfg, targets)
    assert not len(batch.payloads)
    assert set(batch.rejects["key"]) == {"O0", "O1"}
    assert "order_number" in batch.rejects["field"].iloc[0]


def test_each_integration_gets_its_own_schema(targets):
    cfg = MappingConfig(
        key="order_id",
        connection_column="customer",
        connection_values={"ACME": "acme", "HERO": "hero"},
        fields={
            **{k: v for k, v in ORDER_FIELDS.items() if k != "line_items.product_id"},
            "line_items.sku": "sku",
        },
        constants={"line_items.product_id": "ignored"},
        connection_constants={"hero": {}},
    )
    frame = order_rows(2, 1, customer=["ACME", "HERO"], sku=["s1", "s2"])
    batch = build_payloads(frame, cfg, targets, validate_bodies="all")
    # the sandbox needs product_id (a constant gives it); shiphero has no product_id on items: left out for it
    assert set(batch.payloads["key"]) == {"O0", "O1"}
    b = bodies(batch)
    assert (
        b["O0"]["line_items"][0]["product_id"] == "ignored" and "product_id" not in b["O1"]["line_items"][0]
    )
    assert batch.dropped_fields["hero"] == ["line_items.product_id"]
    # asked to reject instead, shiphero's record is refused for it
    batch = build_payloads(
        frame, cfg.model_copy(update={"unknown_fields": "reject"}), targets, validate_bodies="all"
    )
    assert list(batch.payloads["key"]) == ["O0"] and set(batch.rejects["key"]) == {"O1"}


def test_shape_validation_agrees_with_validating_every_body(targets, config):
    frame = order_rows(30, 2)
    frame["name"] = frame["name"].astype(object)
    frame.loc[frame.index % 7 == 0, "name"] = None
    frame.loc[5, "product_id"] = None
    fast = build_payloads(frame, config, targets)
    full = build_payloads(frame, config, targets, validate_bodies="all")
    pd.testing.assert_frame_equal(fast.payloads, full.payloads)
    validate = body_validator(targets["acme"].doc, "create_order")
    assert all(not validate(json.loads(b)) for b in fast.payloads["body"])


def test_dates_are_sent_in_the_format_the_field_wants():
    targets = {"ongoing": Target("ongoing", "wms", "ongoing_wms", load_doc("ongoing_wms"))}
    fields = {k: v for k, v in ORDER_FIELDS.items() if k not in ("line_items.product_id",)}
    fields.update({"line_items.sku": "product_id", "delivery_date": "due"})
    cfg = MappingConfig(
        key="order_id", connection="ongoing", fields=fields, constants={"warehouse_id": "WH1"}
    )
    frame = order_rows(1, 1, due=pd.to_datetime(["2024-05-01 08:00"]).tz_localize("Europe/Stockholm"))
    batch = build_payloads(frame, cfg, targets, validate_bodies="all")
    assert json.loads(batch.payloads["body"].iloc[0])["delivery_date"] == "2024-05-01T06:00:00Z"
