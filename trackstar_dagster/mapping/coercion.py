"""Vectorised coercion of warehouse columns to JSON values, by the target field's schema type and format.

One column at a time, never one row at a time: a column comes in (any pandas dtype), and out come the
JSON-ready Python values (``None`` where the field must be left out), a null mask, a "bad" mask with a reason
per bad row, and a typed pandas Series for the pandera checks.

Decisions (documented in the README's mapping section):

- Strings are stripped of surrounding whitespace (``" Main St "`` -> ``"Main St"``); inner text is untouched.
  A value that is null-like after stripping (the one rule in :mod:`trackstar_dagster.base.nulls`) is left out.
- Numeric strings into number/integer fields are read as numbers (``"12.50"`` -> ``12.5``): warehouse
  exports are often text. A string that is not a number is a reject naming the field.
- Integer fields stay integers: ``2.0`` -> ``2``; ``2.5`` (or ``inf``) is a reject naming the field. An integer
  outside the signed 64-bit range (``2**70``, ``1e19``) is a reject too, in integer and number fields: JSON
  writers and the pandera checks stop there, and no warehouse quantity or price is that large.
- ``Decimal`` -> ``float`` for number fields, ``int`` for integer fields when integral.
- Timestamps -> ISO 8601 in UTC with ``Z`` for ``format: date-time``, for string fields without a format, and
  for date-like untyped fields; naive timestamps are taken as UTC. ``format: date`` -> ``YYYY-MM-DD`` (the wall
  date of the timestamp, in its own time zone). Strings into date/date-time fields are parsed and rewritten in
  the same forms; unparseable ones are rejects. ``numpy.datetime64`` values in an object column are timestamps.
- Booleans: ``True/False``, and the strings/numbers ``true/false/yes/no/1/0`` into boolean fields.
- Categorical columns are read as their category values.
- Nothing a cell holds raises: a value that cannot be written as JSON text (a lone surrogate in a string,
  bytes, a set, an integer beyond 64 bits inside a list) is found by ``unwritable`` and refused by the caller.

The per-type rules live in ``coercers``; this module picks one per field spec, coerces distinct values once
(factorised columns) and caches a column's codes for the build (``ColumnCodes``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trackstar_dagster.mapping.cells import clean_any, none_mask, obj_array, object_array
from trackstar_dagster.mapping.coercers import (
    a_type,
    as_text,
    booleans,
    datetimes_from_objects,
    generic,
    iso_date,
    iso_utc,
    numbers,
    strings_of,
)
from trackstar_dagster.mapping.fieldspec import Coerced, FieldSpec


def coerce_column(series: pd.Series, spec: FieldSpec) -> Coerced:
    """Coerce one source column to the JSON values of the field ``spec`` describes (see the module docstring).

    Text, object, categorical and timestamp columns are factorised first and only their distinct values are
    coerced (a header column repeats one value per line item; a SKU column has few distinct values).
    """
    dtype = series.dtype
    if len(series) > 64 and (
        pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
    ):
        try:
            codes, uniques = pd.factorize(series, use_na_sentinel=True)
        except TypeError:  # unhashable values (dicts, lists): value by value
            return _coerce(series, spec)
        if len(uniques) <= len(series) // 2 or not pd.api.types.is_datetime64_any_dtype(dtype):
            u = _coerce(pd.Series(uniques), spec)
            return _expand(u, codes)
    return _coerce(series, spec)


def coerce_codes(series: pd.Series, spec: FieldSpec) -> tuple[np.ndarray, Coerced]:
    """(codes, coerced distinct values): the column factorised, its distinct values coerced once.

    ``codes`` index ``result.values`` per row, -1 where the source value is missing. Unhashable columns
    (dicts, lists) get one code per row.
    """
    source = series
    if pd.api.types.is_string_dtype(series.dtype) and not pd.api.types.is_object_dtype(series.dtype):
        source = series.to_numpy(dtype=object)  # factorising the object array is ~40% faster
    try:
        codes, uniques = pd.factorize(source, use_na_sentinel=True)
    except TypeError:
        return np.arange(len(series), dtype=np.intp), _coerce(series.reset_index(drop=True), spec)
    u = _coerce(pd.Series(uniques, dtype=object if source is not series else None), spec)
    u.path = spec.path
    dtype = series.dtype
    if pd.api.types.is_float_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        u.distinct = True  # distinct numbers stay distinct
    elif spec.type == "string" and pd.api.types.is_string_dtype(dtype):
        src = np.asarray(uniques, dtype=object).tolist()
        u.distinct = all(o is None or o is x for x, o in zip(src, u.values.tolist(), strict=True))
    return codes, u


def canonical_codes(values: np.ndarray, distinct: bool = False) -> np.ndarray:
    """One id per distinct JSON value (-1 for None), so values that clean to the same thing compare equal.

    ``distinct``: the caller knows the non-None values are already distinct (no factorising needed).
    """
    if distinct:
        out = np.arange(len(values), dtype=np.intp)
        out[none_mask(values)] = -1
        return out
    try:
        codes, _ = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
        return codes
    except TypeError:
        out = np.arange(len(values), dtype=np.intp)
        out[none_mask(values)] = -1
        return out


def _expand(u: Coerced, codes: np.ndarray) -> Coerced:
    """Per-row results from the results of the distinct values (``codes`` -1 = missing)."""
    missing = codes < 0
    safe = np.where(missing, 0, codes) if missing.any() else codes
    if not len(u.values):
        n = len(codes)
        return Coerced(
            np.full(n, None, dtype=object), np.ones(n, dtype=bool), np.zeros(n, dtype=bool), {}, u.kind
        )
    values = u.values[safe]
    null = u.null[safe]
    bad = u.bad[safe]
    if missing.any():
        values[missing] = None
        null = null | missing
        bad = bad & ~missing
    reasons: dict[int, str] = {}
    if bad.any():
        for pos in np.flatnonzero(bad).tolist():
            reasons[pos] = u.reasons[int(safe[pos])]
    return Coerced(values, null, bad, reasons, u.kind)


def _coerce(series: pd.Series, spec: FieldSpec) -> Coerced:
    n = len(series)
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        series = pd.Series(
            np.asarray(cats, dtype=object)[series.cat.codes.to_numpy()], index=series.index, dtype=object
        ).where(series.cat.codes.to_numpy() >= 0, None)
        dtype = series.dtype
    kind = spec.type if spec.type in ("string", "integer", "number", "boolean") else "object"
    is_dt = pd.api.types.is_datetime64_any_dtype(dtype)
    reasons: dict[int, str] = {}
    bad = np.zeros(n, dtype=bool)

    if spec.type in ("integer", "number"):
        values, null, bad, reasons = numbers(series, spec)
        if spec.type == "number":
            kind = "number"
        return Coerced(values, null, bad, reasons, kind)
    if spec.type == "boolean":
        values, null, bad, reasons = booleans(series, spec)
        return Coerced(values, null, bad, reasons, "boolean")

    if is_dt:
        values = iso_date(series) if spec.format == "date" else iso_utc(series)
        null = none_mask(values)
        if spec.type not in (None, "string"):
            bad = ~null
            reasons = {
                int(p): f"{spec.path}: a timestamp is not {a_type(spec.type)}" for p in np.flatnonzero(bad)
            }
            values = np.full(n, None, dtype=object)
        return Coerced(values, null, bad, reasons, "string" if spec.type in (None, "string") else kind)

    if spec.type == "string":
        if spec.format in ("date", "date-time"):
            arr = object_array(series)
            cleaned = obj_array([clean_any(v) if isinstance(v, str) else v for v in arr])
            null = none_mask(cleaned)
            values = datetimes_from_objects(cleaned, spec.format, spec, reasons, bad)
            return Coerced(values, null, bad, reasons, "string")
        if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            values = strings_of(series)
            # non-string objects (numbers, Decimals, dates) into a string field: their JSON text form
            if pd.api.types.is_object_dtype(dtype) and not all(type(x) is str or x is None for x in values):
                for pos in np.flatnonzero(~none_mask(values)):
                    v = values[pos]
                    if not isinstance(v, str):
                        s = as_text(v, spec)
                        if s is None:
                            bad[pos] = True
                            reasons[int(pos)] = f"{spec.path}: {type(v).__name__} is not a string"
                        values[pos] = s
            null = none_mask(values) & ~bad
            return Coerced(values, null, bad, reasons, "string")
        # numbers / bools into a string field: their text (integral floats without ".0", e.g. postal codes)
        arr = object_array(series)
        null = none_mask(arr)
        if pd.api.types.is_float_dtype(dtype):
            f = series.to_numpy(dtype=np.float64, na_value=np.nan)
            null = ~np.isfinite(f)
        values = np.full(n, None, dtype=object)
        idx = np.flatnonzero(~null)
        values[idx] = obj_array([as_text(v, spec) for v in arr[idx]])
        return Coerced(values, null, bad, reasons, "string")

    # untyped, object or array fields: generic JSON conversion, value by value
    arr = object_array(series)
    values = obj_array([None if v is None else generic(v) for v in arr])
    null = none_mask(values)
    if spec.type in ("object", "array"):
        want = dict if spec.type == "object" else list
        for pos in np.flatnonzero(~null):
            if not isinstance(values[pos], want):
                bad[pos] = True
                reasons[int(pos)] = f"{spec.path}: {type(values[pos]).__name__} is not {a_type(spec.type)}"
                values[pos] = None
    return Coerced(values, null, bad, reasons, "object")


class ColumnCodes:
    """``coerce_codes`` of the work frame's columns, once per (column, type, format) in one build.

    Why an object: a key column is often mapped too, so the record index and the column stage ask for the
    same column; both are handed this one cache.
    """

    def __init__(self, work: pd.DataFrame) -> None:
        self.work = work
        self._cache: dict[tuple[str, Any, Any], tuple[np.ndarray, Coerced]] = {}

    def get(self, column: str, spec: FieldSpec) -> tuple[np.ndarray, Coerced]:
        """(code per row, coerced distinct values) of ``column``, its reasons naming ``spec.path``."""
        k = (column, spec.type, spec.format)
        if k not in self._cache:
            self._cache[k] = coerce_codes(self.work[column], spec)
        codes, u = self._cache[k]
        return codes, u.for_path(spec.path)
