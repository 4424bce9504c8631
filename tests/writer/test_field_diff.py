"""The pure field diff of a body against the record Trackstar holds: only the body's fields, by path."""

from __future__ import annotations

from trackstar_dagster.writer.field_diff import field_changes

HELD = {
    "id": "ord_1",
    "status": "open",
    "created_date": "2026-11-20T10:00:00.000000Z",
    "order_number": "A-1",
    "order_date": "2026-11-20T00:00:00.000000Z",
    "ship_to_address": {"full_name": "Ada", "city": "Reno", "postal_code": "89501", "country": "US"},
    "line_items": [
        {"sku": "S1", "product_id": "p1", "quantity": 1, "unit_price": 10.0},
        {"sku": "S2", "product_id": "p2", "quantity": 2, "unit_price": 5.5},
    ],
    "trackstar_tags": ["tsd:s:create_order:A-1", {"source": "shop"}],
}


def body(**changes):
    out = {
        "order_number": "A-1",
        "order_date": "2026-11-20T00:00:00Z",
        "ship_to_address": {"full_name": "Ada", "city": "Reno", "postal_code": "89501", "country": "US"},
        "line_items": [
            {"sku": "S1", "product_id": "p1", "quantity": 1, "unit_price": 10},
            {"sku": "S2", "product_id": "p2", "quantity": 2, "unit_price": 5.5},
        ],
        "trackstar_tags": [{"source": "shop"}, "tsd:s:create_order:A-1"],
    }
    out.update(changes)
    return out


def fields(changes):
    return {c.field: (c.held, c.new) for c in changes}


def test_the_same_values_in_trackstar_s_forms_are_no_change():
    # 10 vs 10.0, a date with or without microseconds and Z vs +00:00, tags in another order, and
    # the fields Trackstar adds (id, status, dates) that the body does not set
    assert field_changes(body(), HELD) == []
    assert field_changes(body(order_date="2026-11-20T00:00:00+00:00"), HELD) == []
    assert field_changes(body(order_date="2026-11-20"), HELD) == []


def test_a_nested_field_is_named_by_its_path_and_only_it():
    changed = body(ship_to_address={**body()["ship_to_address"], "city": "Elko"})
    assert fields(field_changes(changed, HELD)) == {"ship_to_address.city": ("Reno", "Elko")}
    (change,) = field_changes(changed, HELD)
    assert change.name == "ship_to_address.city" and change.change == "changed"


def test_line_items_are_matched_by_sku_with_added_and_removed_items():
    items = [
        {"sku": "S2", "product_id": "p2", "quantity": 3, "unit_price": 5.5},  # moved first, quantity 2 -> 3
        {"sku": "S3", "product_id": "p3", "quantity": 1},  # added; S1 removed
    ]
    got = {c.field: c for c in field_changes(body(line_items=items), HELD)}
    assert set(got) == {"line_items[sku=S2].quantity", "line_items[sku=S3]", "line_items[sku=S1]"}
    assert (got["line_items[sku=S2].quantity"].held, got["line_items[sku=S2].quantity"].new) == (2, 3)
    assert got["line_items[sku=S2].quantity"].name == "line_items[].quantity"
    assert got["line_items[sku=S3]"].change == "added" and got["line_items[sku=S3]"].held is None
    assert got["line_items[sku=S3]"].new == items[1]
    assert got["line_items[sku=S1]"].change == "removed" and got["line_items[sku=S1]"].new is None
    assert got["line_items[sku=S1]"].held == HELD["line_items"][0]
    assert {c.name for c in got.values()} == {"line_items[].quantity", "line_items[]"}


def test_line_items_without_sku_by_product_id_else_by_position():
    by_product = [{"product_id": "p2", "quantity": 2}, {"product_id": "p1", "quantity": 4}]
    held = {"line_items": [{"product_id": "p1", "quantity": 1}, {"product_id": "p2", "quantity": 2}]}
    assert fields(field_changes({"line_items": by_product}, held)) == {
        "line_items[product_id=p1].quantity": (1, 4)
    }
    plain = {"line_items": [{"quantity": 1}, {"quantity": 5}, {"quantity": 7}]}
    held = {"line_items": [{"quantity": 1.0}, {"quantity": 2}]}
    got = {c.field: c for c in field_changes(plain, held)}
    assert set(got) == {"line_items[1].quantity", "line_items[2]"}
    assert got["line_items[2]"].change == "added"


def test_a_field_trackstar_does_not_hold_and_a_nested_object_it_lacks():
    got = fields(
        field_changes({"order_number": "A-1", "gift_note": "hi", "ship_to_address": {"city": "X"}}, {})
    )
    assert got == {
        "order_number": (None, "A-1"),
        "gift_note": (None, "hi"),
        "ship_to_address.city": (None, "X"),
    }


def test_numbers_dates_and_text_are_not_confused():
    held = {"a": "1", "b": True, "c": "2026-11-20T00:00:00Z", "d": "Reno", "e": 1.5, "f": None}
    assert field_changes(
        {"a": 1, "b": 1, "c": "2026-11-20T01:00:00Z", "d": "reno", "e": 1.5, "f": None}, held
    )
    got = fields(field_changes({"a": 1, "b": 1, "c": "2026-11-20T01:00:00Z", "d": "reno", "e": 1.5}, held))
    # a number Trackstar returns as text is the same number; a bool is not 1; another hour, another case differ
    assert set(got) == {"b", "c", "d"}
