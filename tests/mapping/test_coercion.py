"""Coercion of warehouse column types to the JSON values a field's schema wants."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd

from trackstar_dagster.mapping.coercion import coerce_codes, coerce_column
from trackstar_dagster.mapping.fieldspec import FieldSpec


def coerce(values, **spec):
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    return coerce_column(series, FieldSpec("line_items.x", **spec))


def test_numpy_ints_floats_bools_become_python_values():
    ints = coerce(np.array([1, 2], dtype=np.int64), type="integer")
    assert [type(v) for v in ints.values] == [int, int]
    floats = coerce(np.array([1.5, 2.25]), type="number")
    assert list(floats.values) == [1.5, 2.25] and all(type(v) is float for v in floats.values)
    bools = coerce(np.array([True, False]), type="boolean")
    assert list(bools.values) == [True, False] and all(type(v) is bool for v in bools.values)


def test_integer_fields_stay_integers_and_fractions_are_rejected_naming_the_field():
    c = coerce([2.0, 2.5, np.nan, 3], type="integer")
    assert c.values[0] == 2 and type(c.values[0]) is int
    assert c.bad.tolist() == [False, True, False, False]
    assert c.reasons[1].startswith("line_items.x") and "integer" in c.reasons[1]
    assert c.null.tolist() == [False, False, True, False]


def test_nullable_integer_column_keeps_ints():
    c = coerce(pd.Series([1, None, 3], dtype="Int64"), type="integer")
    assert list(c.values) == [1, None, 3]


def test_decimal_becomes_a_number_or_an_int_when_integral_for_integer_fields():
    num = coerce([Decimal("12.50"), Decimal("3")], type="number")
    assert list(num.values) == [12.5, 3.0]
    ints = coerce([Decimal("3"), Decimal("3.5")], type="integer")
    assert ints.values[0] == 3 and type(ints.values[0]) is int
    assert ints.bad.tolist() == [False, True]


def test_numeric_strings_are_read_as_numbers_and_other_text_is_rejected():
    c = coerce([" 12.5 ", "7", "abc", "null"], type="number")
    assert list(c.values[:2]) == [12.5, 7]
    assert c.bad.tolist() == [False, False, True, False]
    assert "line_items.x" in c.reasons[2]
    assert c.null.tolist() == [False, False, False, True]


def test_infinite_numbers_are_rejected():
    c = coerce([np.inf, 1.0], type="number")
    assert c.bad.tolist() == [True, False]


def test_timestamps_become_iso_utc_with_z_for_date_time_fields():
    naive = pd.Series(pd.to_datetime(["2024-03-01 12:30:00", None]))
    assert list(coerce(naive, type="string", format="date-time").values) == ["2024-03-01T12:30:00Z", None]
    aware = pd.Series(pd.to_datetime(["2024-03-01 12:30:00"]).tz_localize("America/New_York"))
    assert list(coerce(aware, type="string", format="date-time").values) == ["2024-03-01T17:30:00Z"]


def test_each_timestamp_is_written_on_its_own_whatever_its_neighbours():
    """One format whatever the dtype and whatever else is in the build: a whole second is ``...:00Z`` beside a
    fractional value too (it was ``.000000Z`` then, so a record's body depended on the other rows)."""
    mixed = pd.Series(pd.to_datetime(["2024-03-01 04:30:00", "2024-03-01 04:30:00.5"], format="ISO8601"))
    alone = pd.Series(pd.to_datetime(["2024-03-01 04:30:00"]))
    objects = pd.Series(
        [pd.Timestamp("2024-03-01 04:30:00"), np.datetime64("2024-03-01T04:30:00.5")], dtype=object
    )
    want = ["2024-03-01T04:30:00Z", "2024-03-01T04:30:00.500000Z"]
    assert list(coerce(mixed, type="string", format="date-time").values) == want
    assert list(coerce(objects, type="string", format="date-time").values) == want
    assert list(coerce(alone, type="string", format="date-time").values) == want[:1]


def test_timestamps_become_plain_dates_for_date_fields():
    ts = pd.Series(pd.to_datetime(["2024-03-01 23:30:00"]))
    assert list(coerce(ts, type="string", format="date").values) == ["2024-03-01"]
    objs = coerce([dt.date(2024, 3, 1), "2024-03-02T10:00:00", "garbage"], type="string", format="date")
    assert list(objs.values[:2]) == ["2024-03-01", "2024-03-02"]
    assert objs.bad.tolist() == [False, False, True]


def test_untyped_and_date_named_fields_get_iso_utc_timestamps():
    ts = pd.Series(pd.to_datetime(["2024-03-01 12:30:00"]))
    assert list(coerce_column(ts, FieldSpec("required_ship_date")).values) == ["2024-03-01T12:30:00Z"]
    assert list(coerce_column(ts, FieldSpec("order_date", type="string")).values) == ["2024-03-01T12:30:00Z"]


def test_date_time_strings_are_normalised_and_garbage_rejected():
    c = coerce(["2024-03-01T12:30:00+02:00", "2024-03-01", "soon"], type="string", format="date-time")
    assert list(c.values[:2]) == ["2024-03-01T10:30:00Z", "2024-03-01T00:00:00Z"]
    assert c.bad.tolist() == [False, False, True]


def test_categorical_columns_become_strings():
    c = coerce(pd.Series(["a", "b", None], dtype="category"), type="string")
    assert list(c.values) == ["a", "b", None]


def test_strings_are_stripped_and_null_like_text_is_missing():
    c = coerce(pd.Series([" Main St ", "NULL", " n/a ", "", None, "NA"], dtype="str"), type="string")
    assert list(c.values) == ["Main St", None, None, None, None, "NA"]


def test_numbers_into_string_fields_keep_their_digits():
    c = coerce([2134.0, 7, Decimal("1.50")], type="string")
    assert list(c.values) == ["2134", "7", "1.50"]


def test_booleans_from_text():
    c = coerce(["yes", "false", "maybe", None], type="boolean")
    assert list(c.values[:2]) == [True, False]
    assert c.bad.tolist() == [False, False, True, False]


def test_distinct_values_are_coerced_once_and_map_back_to_rows():
    series = pd.Series(["a ", "a ", None, "b"] * 50, dtype="str")
    codes, u = coerce_codes(series, FieldSpec("x", type="string"))
    assert len(u.values) == 2
    values = np.append(u.values, None)[codes]
    assert list(values[:4]) == ["a", "a", None, "b"]
