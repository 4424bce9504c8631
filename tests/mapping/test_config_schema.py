"""The mapping is checked against the connections' write-info schemas before anything is built: a target no
connection's schema has is a typo (a ``ConfigError`` naming it and the closest real field); one only some
connections lack is left out of their bodies (mapped fields and constants alike) and listed."""

from __future__ import annotations

import json

import pytest

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.mapping import MappingConfig, build_payloads

from .conftest import ORDER_FIELDS, order_rows
from .test_mapping import ExplodingFrame


def bodies(batch) -> dict[str, dict]:
    return {k: json.loads(b) for k, b in zip(batch.payloads["key"], batch.payloads["body"], strict=True)}


TWO = {"connection_column": "customer", "connection_values": {"ACME": "acme", "HERO": "hero"}}
HERO_FIELDS = {
    **{k: v for k, v in ORDER_FIELDS.items() if k != "line_items.product_id"},
    "line_items.sku": "sku",
}


@pytest.mark.parametrize(
    ("where", "typo", "closest"),
    [
        ("fields", "refrence_id", "reference_id"),
        ("fields", "ship_to_adress.city", "ship_to_address.city"),
        ("fields", "line_items.quantiy", "line_items.quantity"),
        ("constants", "ship_to_adress.city", "ship_to_address.city"),
        ("constants", "invoice_curency_code", "invoice_currency_code"),
        ("connection_constants", "shiping_method_name", "shipping_method_name"),
    ],
)
def test_a_target_no_schema_has_is_a_config_error_naming_the_closest_field(targets, where, typo, closest):
    fields = dict(HERO_FIELDS)
    extra: dict = {}
    if where == "fields":
        fields[typo] = "city"
    elif where == "constants":
        extra["constants"] = {typo: "x"}
    else:
        extra["connection_constants"] = {"hero": {typo: "x"}}
    for unknown_fields in ("drop", "reject"):
        cfg = MappingConfig(key="order_id", **TWO, fields=fields, unknown_fields=unknown_fields, **extra)
        frame = ExplodingFrame(order_rows(1, 1, sku=["s"], customer=["HERO"]))
        with pytest.raises(ConfigError, match=typo.replace(".", r"\.")) as info:
            build_payloads(frame, cfg, targets)
        assert repr(closest) in str(info.value)


def test_several_typos_are_named_at_once(targets):
    cfg = MappingConfig(
        key="order_id",
        connection="acme",
        fields={**ORDER_FIELDS, "refrence_id": "city"},
        constants={"chanel": "web"},
    )
    with pytest.raises(ConfigError) as info:
        build_payloads(order_rows(1, 1), cfg, targets)
    assert "refrence_id" in str(info.value) and "chanel" in str(info.value)
    assert "'reference_id'" in str(info.value) and "'channel'" in str(info.value)


def test_a_field_only_some_connections_lack_is_left_out_for_them_and_listed(targets):
    fields = {**HERO_FIELDS, "line_items.product_id": "product_id", "packing_note": "note", "channel": "chan"}
    cfg = MappingConfig(key="order_id", **TWO, fields=fields)
    frame = order_rows(
        2, 1, sku=["s0", "s1"], note=["fragile"] * 2, chan=["web"] * 2, customer=["ACME", "HERO"]
    )
    batch = build_payloads(frame, cfg, targets)
    assert not len(batch.rejects), batch.rejects.to_dict("records")
    b = bodies(batch)
    assert b["O0"]["channel"] == "web" and "packing_note" not in b["O0"]  # acme: wms_sandbox
    assert b["O1"]["packing_note"] == "fragile" and "channel" not in b["O1"]  # hero: shiphero
    assert "product_id" not in b["O1"]["line_items"][0]
    assert batch.dropped_fields == {"acme": ["packing_note"], "hero": ["channel", "line_items.product_id"]}


def test_constants_a_connection_lacks_are_left_out_for_it(targets):
    """The README's own example: a currency constant in a mapping feeding an integration without that field."""
    fields = {**HERO_FIELDS, "line_items.product_id": "product_id"}
    cfg = MappingConfig(
        key="order_id",
        **TWO,
        fields=fields,
        constants={"invoice_currency_code": "USD"},
        connection_constants={
            "hero": {"packing_note": "handle with care"},
            "acme": {"packing_note": "ignored here"},
        },
    )
    frame = order_rows(2, 1, sku=["s0", "s1"], customer=["ACME", "HERO"])
    batch = build_payloads(frame, cfg, targets, validate_bodies="all")
    assert not len(batch.rejects), batch.rejects.to_dict("records")
    b = bodies(batch)
    assert b["O0"]["invoice_currency_code"] == "USD" and "packing_note" not in b["O0"]
    assert "invoice_currency_code" not in b["O1"] and b["O1"]["packing_note"] == "handle with care"
    assert batch.dropped_fields == {
        "acme": ["packing_note"],
        "hero": ["invoice_currency_code", "line_items.product_id"],
    }


def test_with_reject_a_field_a_connection_lacks_rejects_its_records(targets):
    fields = {**HERO_FIELDS, "line_items.product_id": "product_id"}
    cfg = MappingConfig(
        key="order_id",
        **TWO,
        fields=fields,
        constants={"invoice_currency_code": "USD"},
        unknown_fields="reject",
    )
    frame = order_rows(2, 1, sku=["s0", "s1"], customer=["ACME", "HERO"])
    batch = build_payloads(frame, cfg, targets)
    assert list(batch.payloads["key"]) == ["O0"] and set(batch.rejects["key"]) == {"O1"}
    assert batch.dropped_fields == {}


def test_a_build_over_one_connection_knows_the_fields_of_the_others(targets):
    """One customer's run builds for its connection only; a field only another connection's schema has
    (hero's ``packing_note``) is that connection's, not a typo. A field no schema has still is, and when the
    others cannot all be known (``others`` answers None), nothing is called a typo."""
    fields = {**HERO_FIELDS, "line_items.product_id": "product_id", "packing_note": "note"}
    full = MappingConfig(key="order_id", **TWO, fields=fields)
    acme_only = full.model_copy(update={"connection_values": {"ACME": "acme"}})
    frame = order_rows(1, 1, sku=["s0"], note=["fragile"], customer=["ACME"])
    acme = {"acme": targets["acme"]}
    with pytest.raises(ConfigError, match="packing_note"):  # what a narrowed run did before
        build_payloads(frame, acme_only, acme)
    batch = build_payloads(frame, acme_only, acme, others=lambda: targets)
    assert not len(batch.rejects) and "packing_note" not in bodies(batch)["O0"]

    typo = acme_only.model_copy(update={"fields": {**fields, "packing_nte": "note"}})
    with pytest.raises(ConfigError, match="packing_nte") as info:
        build_payloads(frame, typo, acme, others=lambda: targets)
    assert "'packing_note'" in str(info.value) and "shiphero" in str(info.value)
    assert len(build_payloads(frame, typo, acme, others=lambda: None).payloads) == 1
