"""Nothing in a cell escapes ``build_payloads``: every value problem is a reject of its own record only, with a
reason and the original value as text; every other record goes out unchanged. Duplicated source columns are a
configuration error."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.mapping import MappingConfig, Target, build_payloads
from trackstar_dagster.mapping.previews import top_reject_reasons

from .conftest import ORDER_FIELDS, load_doc, order_rows
from .test_mapping import ExplodingFrame


def bodies(batch) -> dict[str, dict]:
    return {k: json.loads(b) for k, b in zip(batch.payloads["key"], batch.payloads["body"], strict=True)}


def with_cells(frame: pd.DataFrame, column: str, rows: list[int], value) -> pd.DataFrame:
    """``frame`` with ``value`` (any object, even a list or an array) in ``column`` at ``rows``."""
    cells = frame[column].astype(object).tolist()
    for r in rows:
        cells[r] = value
    out = frame.copy()
    out[column] = pd.Series(cells, dtype=object, index=frame.index)
    return out


def only_o1_refused(batch, clean) -> pd.DataFrame:
    """O0 and O2 go out exactly as from a clean frame; O1 is refused; every reject is readable text."""
    assert list(batch.payloads["key"]) == ["O0", "O2"]
    assert set(batch.rejects["key"]) == {"O1"}
    assert list(batch.payloads["body"]) == [
        b for k, b in zip(clean.payloads["key"], clean.payloads["body"], strict=True) if k != "O1"
    ]
    rej = batch.rejects
    assert rej["reason"].notna().all() and rej["field"].notna().all()
    for text in [*rej["value"].dropna(), *rej["reason"], *rej["key"].dropna()]:
        text.encode("utf-8")  # no lone surrogate reaches the rejects frame
    return rej


# -- (A) lone surrogates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "field", "rows"),
    [
        ("city", "ship_to_address.city", [2, 3]),
        ("name", "ship_to_address.full_name", [2, 3]),
        ("product_id", "line_items.product_id", [3]),
    ],
)
def test_a_lone_surrogate_rejects_its_record_and_shows_the_value(targets, config, column, field, rows):
    clean = build_payloads(order_rows(3, 2), config, targets)
    batch = build_payloads(with_cells(order_rows(3, 2), column, rows, "Bo\ud800ston"), config, targets)
    rej = only_o1_refused(batch, clean)
    row = rej[rej["field"] == field].iloc[0]
    assert "surrogate" in row["reason"] and field in row["reason"]
    assert row["value"] == "Bo\\ud800ston"  # the original text, the surrogate written as an escape
    assert list(row["source_rows"]) == [2, 3]


def test_a_surrogate_in_a_personal_field_is_masked_in_previews(targets, config):
    frame = with_cells(order_rows(3, 2), "name", [2, 3], "Ann\udc80 Lee")
    text = top_reject_reasons(build_payloads(frame, config, targets).rejects)
    assert "ship_to_address.full_name" in text and "Ann" not in text and "***" in text


def test_a_lone_surrogate_in_a_key_rejects_that_record(targets, config):
    clean = build_payloads(order_rows(3, 2), config, targets)
    frame = with_cells(order_rows(3, 2), "order_id", [2, 3], "O\ud8001")
    batch = build_payloads(frame, config, targets)
    assert list(batch.payloads["key"]) == ["O0", "O2"]
    assert list(batch.payloads["body"]) == [clean.payloads["body"].iloc[0], clean.payloads["body"].iloc[2]]
    rej = batch.rejects[batch.rejects["field"] == "order_id"]
    assert len(rej) >= 1 and "surrogate" in rej["reason"].iloc[0]
    assert rej["value"].iloc[0] == "O\\ud8001" and list(rej["source_rows"].iloc[0]) == [2, 3]


# -- (A) integers beyond 64 bits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "field", "value", "shown"),
    [
        ("qty", "line_items.quantity", 2**70, "1180591620717411303424"),
        ("qty", "line_items.quantity", -(2**70), "-1180591620717411303424"),
        ("qty", "line_items.quantity", "99999999999999999999999", "99999999999999999999999"),
        ("qty", "line_items.quantity", Decimal("1E+30"), "1E+30"),
        ("price", "line_items.unit_price", 2**70, "1180591620717411303424"),
    ],
)
def test_an_integer_beyond_64_bits_is_a_reject_with_its_value(targets, config, column, field, value, shown):
    clean = build_payloads(order_rows(3, 2), config, targets)
    batch = build_payloads(with_cells(order_rows(3, 2), column, [2], value), config, targets)
    rej = only_o1_refused(batch, clean)
    assert rej["field"].tolist() == [field]
    assert rej["value"].iloc[0] == shown
    assert "64-bit" in rej["reason"].iloc[0] and field in rej["reason"].iloc[0]


@pytest.mark.parametrize("value", [1e19, -1e19, 9.3e18, 1e300])
def test_a_float_beyond_the_integer_range_is_refused_with_the_true_value(targets, config, value):
    clean = build_payloads(order_rows(3, 2), config, targets)
    frame = order_rows(3, 2)
    frame["qty"] = frame["qty"].astype(float)
    frame.loc[2, "qty"] = value
    batch = build_payloads(frame, config, targets)
    rej = only_o1_refused(batch, clean)
    assert rej["field"].tolist() == ["line_items.quantity"]
    assert rej["value"].iloc[0] == str(value)  # e.g. 1e+19, never a wrapped -9223372036854775808
    assert "64-bit" in rej["reason"].iloc[0] and ">=" not in rej["reason"].iloc[0]


def test_unsigned_64_bit_columns_beyond_the_signed_range_are_refused(targets, config):
    clean = build_payloads(order_rows(3, 2), config, targets)
    frame = order_rows(3, 2)
    frame["qty"] = np.array([1, 2, 2**64 - 1, 2, 1, 2], dtype=np.uint64)
    batch = build_payloads(frame, config, targets)
    rej = only_o1_refused(batch, clean)
    assert rej["value"].iloc[0] == str(2**64 - 1) and "64-bit" in rej["reason"].iloc[0]


def test_the_largest_64_bit_integer_still_goes_out(targets, config):
    frame = with_cells(order_rows(1, 1), "qty", [0], 2**63 - 1)
    batch = build_payloads(frame, config, targets)
    assert bodies(batch)["O0"]["line_items"][0]["quantity"] == 2**63 - 1


# -- (A) numpy datetimes in object columns -------------------------------------------------------------------


def ongoing():
    targets = {"ongoing": Target("ongoing", "wms", "ongoing_wms", load_doc("ongoing_wms"))}
    fields = {k: v for k, v in ORDER_FIELDS.items() if k != "line_items.product_id"}
    fields.update({"line_items.sku": "product_id", "delivery_date": "due"})
    cfg = MappingConfig(
        key="order_id", connection="ongoing", fields=fields, constants={"warehouse_id": "WH1"}
    )
    return targets, cfg


@pytest.mark.parametrize(
    "value",
    [
        np.datetime64("2024-05-01T04:30:00"),
        np.datetime64("2024-05-01T04:30:00.000000000"),
        np.datetime64("2024-05-01T04:30", "m"),
    ],
)
def test_numpy_datetimes_in_an_object_column_are_date_times(value):
    targets, cfg = ongoing()
    frame = order_rows(1, 1, due=pd.Series([value], dtype=object))
    batch = build_payloads(frame, cfg, targets, validate_bodies="all")
    assert not len(batch.rejects)
    # the same text a pd.Timestamp of that instant gets in an object column
    ts = build_payloads(
        order_rows(1, 1, due=pd.Series([pd.Timestamp("2024-05-01T04:30")], dtype=object)), cfg, targets
    )
    assert bodies(batch)["O0"]["delivery_date"] == bodies(ts)["O0"]["delivery_date"] == "2024-05-01T04:30:00Z"


def test_numpy_datetimes_into_a_text_field_are_their_iso_text(targets, config):
    frame = with_cells(order_rows(1, 1), "city", [0], np.datetime64("2024-05-01T04:30:00"))
    batch = build_payloads(frame, config, targets)
    as_ts = build_payloads(
        with_cells(order_rows(1, 1), "city", [0], pd.Timestamp("2024-05-01T04:30:00")), config, targets
    )
    assert not len(batch.rejects)
    assert bodies(batch)["O0"]["ship_to_address"]["city"] == bodies(as_ts)["O0"]["ship_to_address"]["city"]


def test_a_missing_numpy_datetime_is_a_missing_value():
    targets, cfg = ongoing()
    frame = order_rows(1, 1, due=pd.Series([np.datetime64("NaT")], dtype=object))
    batch = build_payloads(frame, cfg, targets)  # ongoing requires a delivery date: missing, not "not valid"
    assert batch.rejects[["field", "reason"]].to_dict("records") == [
        {"field": "delivery_date", "reason": "delivery_date: required by ongoing_wms but missing"}
    ]
    assert pd.isna(batch.rejects["value"].iloc[0])


# -- (A) duplicated source columns are a configuration error --------------------------------------------------


def test_duplicated_source_columns_are_a_config_error_naming_them(targets, config):
    frame = order_rows(1, 1)
    frame = pd.concat([frame, frame[["city", "qty"]]], axis=1)
    with pytest.raises(ConfigError, match="duplicate") as info:
        build_payloads(ExplodingFrame(frame), config, targets)
    assert "city" in str(info.value) and "qty" in str(info.value)


def test_duplicated_item_table_columns_are_a_config_error(targets, config):
    orders = order_rows(2, 1).drop(columns=["product_id", "qty", "price"])
    items = pd.DataFrame(
        {"order_id": ["O0", "O1"], "product_id": ["a", "b"], "qty": [1, 2], "price": [1.0, 2.0]}
    )
    items = pd.concat([items, items[["product_id"]]], axis=1)
    with pytest.raises(ConfigError, match="product_id"):
        build_payloads(orders, config, targets, items=items)


def test_a_duplicated_column_the_mapping_does_not_read_is_ignored(targets, config):
    frame = order_rows(1, 1)
    frame["note"] = "x"
    frame = pd.concat([frame, frame[["note"]]], axis=1)
    assert len(build_payloads(frame, config, targets).payloads) == 1


# -- (A) any value, in any column: never an exception ----------------------------------------------------------

ODD = [
    10**5000,
    pd.Series([1, 2]),
    "Bo\ud800ston",
    "\udfff",
    {"a\ud800": 1},
    ["x", "\ud800"],
    2**70,
    -(2**70),
    2**64 - 1,
    2**63,
    np.uint64(2**64 - 1),
    np.int64(-5),
    1e19,
    -1e19,
    1e300,
    float("inf"),
    float("-inf"),
    np.float32("nan"),
    np.float16(2.5),
    Decimal("1E+30"),
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("-Infinity"),
    Decimal("2.50"),
    np.datetime64("2024-05-01T04:30"),
    np.datetime64("NaT"),
    np.datetime64("2024-05-01T04:30:00.123456789"),
    np.timedelta64(5, "s"),
    pd.Timedelta("1h"),
    pd.Timestamp("2024-05-01 04:30", tz="Europe/Berlin"),
    dt.date(2024, 5, 1),
    dt.time(4, 30),
    dt.datetime(2024, 5, 1, 4, 30, tzinfo=dt.UTC),
    pd.Period("2024-05"),
    b"\xff\xfe",
    bytearray(b"x"),
    complex(1, 2),
    {1, 2},
    frozenset({3}),
    object(),
    [2**70],
    {"k": np.datetime64("2024-01-01")},
    {"k": b"x"},
    True,
    np.bool_(False),
    "\x00",
    "x" * 5000,
    pd.NA,
    pd.NaT,
    [],
    {},
    (1, 2),
    np.array([1, 2]),
    " NULL ",
    "1e19",
    "inf",
    "nan",
    "-0",
    "2.0",
    "0x10",
]


@pytest.mark.parametrize(
    "column",
    ["order_id", "customer", "name", "city", "product_id", "qty", "price", "sku", "due", "tags", "note"],
)
def test_no_cell_value_raises_and_every_other_record_goes_out(column):
    """Each odd value in O1's rows of one column: no exception; O0 and O2 go out as from a clean frame; every
    record lands in payloads xor rejects; every reject has a reason and readable text."""
    doc = load_doc("shiphero")
    targets = {
        "hero": Target("hero", "wms", "shiphero", doc),
        "acme": Target("acme", "wms", "wms_sandbox", load_doc("wms_sandbox")),
    }
    fields = {
        **{k: v for k, v in ORDER_FIELDS.items() if k != "line_items.product_id"},
        "line_items.sku": "sku",
        "tags": "tags",
        "packing_note": "note",
        "channel": "due",
        "reference_id": "product_id",
    }
    cfg = MappingConfig(
        key="order_id",
        connection_column="customer",
        connection_values={"HERO": "hero", "ACME": "acme"},
        fields=fields,
    )
    base = order_rows(
        3,
        2,
        customer=["HERO"] * 6,
        sku=["s"] * 6,
        tags=[None] * 6,
        note=["n"] * 6,
        due=["2024-05-01"] * 6,
        product_id=["r0", "r0", "r1", "r1", "r2", "r2"],
    )
    clean = build_payloads(base, cfg, targets)
    assert list(clean.payloads["key"]) == ["O0", "O1", "O2"] and not len(clean.rejects)
    for value in ODD:
        frame = with_cells(base, column, [2, 3], value)
        batch = build_payloads(frame, cfg, targets)
        sent = [tuple(r) for r in batch.payloads["source_rows"]]
        refused = {tuple(r) for r in batch.rejects["source_rows"]}
        assert not set(sent) & refused, value
        assert sorted(i for rec in [*sent, *refused] for i in rec) == list(range(6)), value
        assert len(sent) + len(refused) == batch.records, value
        kept = {k: b for k, b in zip(batch.payloads["key"], batch.payloads["body"], strict=True)}
        for k, b in zip(clean.payloads["key"], clean.payloads["body"], strict=True):
            if k != "O1":
                assert kept[k] == b, (value, k)
        rej = batch.rejects
        assert rej["reason"].notna().all() and rej["field"].notna().all(), value
        for text in [*rej["value"].dropna(), *rej["reason"], *rej["key"].dropna()]:
            text.encode("utf-8")
        for text in batch.payloads["body"]:
            json.loads(text)


def test_a_categorical_column_holding_a_lone_surrogate(targets, config):
    clean = build_payloads(order_rows(3, 2), config, targets)
    frame = with_cells(order_rows(3, 2), "city", [2, 3], "Bo\ud800ston")
    frame["city"] = frame["city"].astype("category")
    rej = only_o1_refused(build_payloads(frame, config, targets), clean)
    assert rej["value"].tolist() == ["Bo\\ud800ston"]


@pytest.mark.parametrize("value", [["O1"], Decimal("sNaN"), {"k": 1}, "O\ud8001"])
def test_an_odd_key_in_an_items_table_raises_nothing(targets, config, value):
    orders = order_rows(3, 1).drop(columns=["product_id", "qty", "price"])
    items = pd.DataFrame(
        {
            "order_id": ["O0", "O1", "O2", "O1"],
            "product_id": ["a", "b", "c", "d"],
            "qty": [1, 2, 3, 4],
            "price": [1.0, 2.0, 3.0, 4.0],
        }
    )
    clean = build_payloads(orders, config, targets, items=items)
    odd_items = with_cells(items, "order_id", [3], value)  # O1's second item loses its key
    batch = build_payloads(orders, config, targets, items=odd_items)
    assert list(batch.payloads["key"]) == ["O0", "O1", "O2"]
    b = bodies(batch)
    assert [i["product_id"] for i in b["O1"]["line_items"]] == ["b"]
    assert [batch.payloads["body"].iloc[i] for i in (0, 2)] == [
        clean.payloads["body"].iloc[i] for i in (0, 2)
    ]
    odd_orders = with_cells(orders, "order_id", [1], value)  # the order itself has the odd key
    batch = build_payloads(odd_orders, config, targets, items=items)
    assert list(batch.payloads["key"]) == ["O0", "O2"] and len(batch.rejects)


@pytest.mark.parametrize("value", [b"", set(), frozenset(), bytearray(), np.array([]), 0, False, ""])
def test_empty_and_falsy_odd_values_in_an_array_field_raise_nothing(targets, value):
    hero = {"hero": targets["hero"], "acme": targets["acme"]}
    fields = {
        **{k: v for k, v in ORDER_FIELDS.items() if k != "line_items.product_id"},
        "line_items.sku": "sku",
        "tags": "tags",
    }
    cfg = MappingConfig(
        key="order_id",
        connection_column="customer",
        connection_values={"HERO": "hero", "ACME": "acme"},
        fields=fields,
    )
    frame = with_cells(
        order_rows(3, 1, customer=["HERO"] * 3, sku=["s"] * 3, tags=[["a"], ["b"], ["c"]]), "tags", [1], value
    )
    batch = build_payloads(frame, cfg, hero)
    assert {"O0", "O2"} <= set(batch.payloads["key"])
    assert batch.records == 3 and len(batch.payloads) + batch.rejected_records == 3
