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
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pandas as pd

from trackstar_dagster.base.nulls import NULL_LIKE_STRINGS, drop_empty, is_null_like

_MAX_NULL_LEN = max(len(s) for s in NULL_LIKE_STRINGS)
_TRUE = frozenset({"true", "yes", "y", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "f"})
JSON_TYPES = ("string", "integer", "number", "boolean", "object", "array")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class FieldSpec:
    """What the target schema says about one field (only what coercion and the flat checks need)."""

    path: str
    type: str | None = None  # string/integer/number/boolean/object/array; None when untyped or unknown
    format: str | None = None  # date-time / date / None
    enum: tuple[Any, ...] = ()
    max_length: int | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False  # required_effective: must be present in every body

    @property
    def leaf(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def date_like(self) -> bool:
        """A field whose name says it holds a date (``order_date``, ``required_ship_date``, ``shipped_at``)."""
        leaf = self.leaf.lower()
        return leaf.endswith(("_date", "_at", "_time")) or leaf in ("date", "datetime", "timestamp")


@dataclass
class Coerced:
    """One coerced column: JSON values (None = leave out) plus masks for nulls and rejects."""

    values: np.ndarray  # object array of JSON-ready Python values, None where missing or bad
    null: np.ndarray  # bool: the source value was null-like
    bad: np.ndarray  # bool: the source value cannot become this field's type
    reasons: dict[int, str] = field(default_factory=dict)  # position -> reason, for bad positions
    kind: str = "string"  # the pandas-facing kind of `values`: string/integer/number/boolean/object
    distinct: bool = False  # the non-None values are known to be pairwise different
    path: str | None = None  # the field path the reasons name

    def for_path(self, path: str) -> Coerced:
        """The same result with its reasons naming ``path`` (one column coerced once, mapped twice)."""
        if path == self.path or not self.reasons:
            return self
        old = self.path or ""
        reasons = {k: (path + r[len(old):] if old and r.startswith(old) else r) for k, r in self.reasons.items()}
        return Coerced(self.values, self.null, self.bad, reasons, self.kind, self.distinct, path)

    def typed(self) -> pd.Series:
        """The values as a typed pandas Series for pandera (string columns are real ``str`` columns)."""
        return typed_series(self.values, self.kind)


def typed_series(values: np.ndarray, kind: str) -> pd.Series:
    """An explicitly typed Series: pandas 3 + pandera want ``str``, ``Int64``, ``Float64``, ``boolean``."""
    if kind == "string":
        return pd.Series(values, dtype="str")
    if kind == "integer":
        mask = np.equal(values, None)
        ints = np.zeros(len(values), dtype=np.int64)
        ok = ~mask
        if ok.any():
            try:
                ints[ok] = values[ok].astype(np.int64)
            except OverflowError:
                return pd.Series(values, dtype=object)
        return pd.Series(pd.arrays.IntegerArray(ints, mask))
    if kind == "number":
        mask = np.equal(values, None)
        floats = np.zeros(len(values), dtype=np.float64)
        ok = ~mask
        if ok.any():
            floats[ok] = values[ok].astype(np.float64)
        return pd.Series(pd.arrays.FloatingArray(floats, mask))
    if kind == "boolean":
        mask = np.equal(values, None)
        bools = np.zeros(len(values), dtype=bool)
        ok = ~mask
        if ok.any():
            bools[ok] = values[ok].astype(bool)
        return pd.Series(pd.arrays.BooleanArray(bools, mask))
    return pd.Series(values, dtype=object)


def _object_array(series: pd.Series) -> np.ndarray:
    """The column as an object array with None for every missing value (NaN, NA, NaT)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.cat.categories.dtype if series.cat.categories.dtype != object else object)
    try:
        arr = series.to_numpy(dtype=object, na_value=None)
    except ArithmeticError:  # decimal.InvalidOperation: pandas' NA test trips on a signaling NaN Decimal
        arr = series.to_numpy(dtype=object).copy()
        arr[na_mask(series)] = None
    try:
        np.equal(arr, None)  # every caller asks this; a cell holding an array has no single answer
    except ValueError:
        arr = obj_array([_plain_cell(x) for x in arr.tolist()])
    return arr


def _plain_cell(x: Any) -> Any:
    """An array-like cell as a list (its JSON form); anything else ``== None`` cannot answer, as its text."""
    if isinstance(x, np.ndarray | pd.Series | pd.Index):
        return x.tolist()
    try:
        bool(x == None)  # noqa: E711 - the very comparison ``np.equal(arr, None)`` makes
    except Exception:  # its __eq__ answers with an array (or fails): only its text can go on
        return str(x)
    return x


def _is_na(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float | np.floating):
        return bool(v != v)
    if isinstance(v, Decimal):
        return v.is_nan()  # quiet and signaling NaN alike
    return isinstance(v, np.datetime64 | np.timedelta64) and bool(np.isnat(v))


def na_mask(series: pd.Series) -> np.ndarray:
    """``series.isna()`` as a bool array, also where a cell is a signaling NaN ``Decimal`` (pandas raises)."""
    try:
        return series.isna().to_numpy(dtype=bool)
    except ArithmeticError:
        return np.fromiter((_is_na(v) for v in series.to_numpy(dtype=object)), dtype=bool, count=len(series))


def obj_array(items: list[Any]) -> np.ndarray:
    """A 1-d object array holding ``items`` as they are (lists and dicts stay single elements)."""
    return np.fromiter(items, dtype=object, count=len(items))


def clean_strings(arr: np.ndarray) -> np.ndarray:
    """Strip every string and turn the null-like ones (and other missing values) into None; in one pass."""
    nl = NULL_LIKE_STRINGS
    m = _MAX_NULL_LEN
    if all(type(v) is str for v in arr):
        stripped = [v.strip() for v in arr]
        return obj_array([None if len(w) <= m and w.casefold() in nl else w for w in stripped])
    return obj_array([_clean_any(v) for v in arr])


def _clean_any(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        w = v.strip()
        return None if len(w) <= _MAX_NULL_LEN and w.casefold() in NULL_LIKE_STRINGS else w
    if isinstance(v, dict | list | tuple):
        return drop_empty(v)
    return None if is_null_like(v) else v


def _strings_of(series: pd.Series) -> np.ndarray:
    """Stripped strings with None for null-like, for a str/object column."""
    arr = _object_array(series)
    present = ~np.equal(arr, None)
    out = np.full(len(arr), None, dtype=object)
    if present.any():
        out[present] = clean_strings(arr[present])
    return out


def _iso_utc(values: pd.Series) -> np.ndarray:
    """datetime64 Series -> ISO 8601 UTC strings with Z (seconds, or microseconds where a value has them)."""
    s = values
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    raw = s.to_numpy(dtype="datetime64[us]")
    nat = np.isnat(raw)
    out = np.full(len(raw), None, dtype=object)
    if (~nat).any():
        # each value on its own (as the value-by-value path writes them): seconds, or microseconds when it has
        # them; never per batch, which made a record's body (and hash) depend on the other rows of the build
        good = raw[~nat]
        frac = good.astype(np.int64) % 1_000_000 != 0
        txt = np.empty(len(good), dtype=object)
        if (~frac).any():
            txt[~frac] = np.datetime_as_string(good[~frac], unit="s")
        if frac.any():
            txt[frac] = np.datetime_as_string(good[frac], unit="us")
        out[~nat] = obj_array([t + "Z" for t in txt.tolist()])
    return out


def _iso_date(values: pd.Series) -> np.ndarray:
    """datetime64 Series -> ``YYYY-MM-DD`` (the wall date in the column's own time zone)."""
    s = values
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    raw = s.to_numpy(dtype="datetime64[D]")
    nat = np.isnat(raw)
    out = np.full(len(raw), None, dtype=object)
    if (~nat).any():
        out[~nat] = obj_array(np.datetime_as_string(raw[~nat], unit="D").tolist())
    return out


def _format_datetime_objects(arr: np.ndarray, fmt: str | None, spec: FieldSpec,
                             reasons: dict[int, str], bad: np.ndarray) -> np.ndarray:
    """Strings/datetimes of an object column into a date or date-time field: parsed and rewritten in ISO form."""
    out = np.full(len(arr), None, dtype=object)
    idx = np.flatnonzero(~np.equal(arr, None))
    if not len(idx):
        return out
    sub = arr[idx]
    if fmt == "date":
        parsed = pd.to_datetime(pd.Series(sub, dtype=object).map(_date_part), errors="coerce", format="%Y-%m-%d")
        txt = _iso_date(parsed)
    else:
        parsed = pd.to_datetime(pd.Series(sub, dtype=object).map(_dt_text), errors="coerce", utc=True,
                                format="ISO8601")
        txt = _iso_utc(parsed)
    failed = np.equal(txt, None)
    out[idx] = txt
    for pos in idx[failed]:
        bad[pos] = True
        reasons[int(pos)] = f"{spec.path}: not a valid {'date' if fmt == 'date' else 'date-time'}"
    return out


def _timestamp(v: Any) -> Any:
    """A ``numpy.datetime64`` as a ``pd.Timestamp`` (None when it is NaT or out of range); other values as they are."""
    if isinstance(v, np.datetime64):
        try:
            ts = pd.Timestamp(v)
        except (ValueError, OverflowError):
            return None
        return None if ts is pd.NaT else ts
    return v


def _date_part(v: Any) -> Any:
    v = _timestamp(v)
    if isinstance(v, dt.datetime):
        return v.date().isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, pd.Timestamp):
        return v.date().isoformat()
    if isinstance(v, str):
        s = v.strip()
        return s[:10] if len(s) >= 10 and (len(s) == 10 or s[10] in "T ") else s
    return None


def _dt_text(v: Any) -> Any:
    v = _timestamp(v)
    if isinstance(v, dt.datetime | pd.Timestamp):
        ts = pd.Timestamp(v)
        return (ts if ts.tzinfo else ts.tz_localize("UTC")).isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, str):
        return v.strip()
    return None


def _to_number(v: Any) -> float | int | None:
    """One non-missing object value to a number, None when it is not one."""
    if isinstance(v, bool | np.bool_ | np.timedelta64):  # numpy counts a timedelta64 as an integer
        return None
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v)
    if isinstance(v, Decimal):
        return float(v) if v.is_finite() else None
    if isinstance(v, str):
        try:
            return float(v.strip().replace(",", "")) if not v.strip().lstrip("+-").isdigit() else int(v.strip())
        except ValueError:
            return None
    return None


def _numbers(series: pd.Series, spec: FieldSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
    """A column into an integer or number field: (values, null, bad, reasons)."""
    n = len(series)
    reasons: dict[int, str] = {}
    dtype = series.dtype
    want_int = spec.type == "integer"
    if pd.api.types.is_bool_dtype(dtype):
        arr = _object_array(series)
        null = np.equal(arr, None)
        bad = ~null
        for pos in np.flatnonzero(bad):
            reasons[int(pos)] = f"{spec.path}: a boolean is not {_a(spec.type)}"
        return np.full(n, None, dtype=object), null, bad, reasons
    if pd.api.types.is_integer_dtype(dtype):
        null = series.isna().to_numpy(dtype=bool)
        bad = np.zeros(n, dtype=bool)
        if pd.api.types.is_unsigned_integer_dtype(dtype):  # uint64 may pass the signed range
            raw = series.to_numpy(dtype=np.uint64, na_value=0)
            bad = ~null & (raw > np.uint64(INT64_MAX))
            raw = np.where(bad, 0, raw)
        else:
            raw = series.to_numpy(dtype=np.int64, na_value=0)
        values = obj_array(raw.astype(np.int64).tolist())
        values[null | bad] = None
        for pos in np.flatnonzero(bad):
            reasons[int(pos)] = _range_reason(spec)
        return values, null, bad, reasons
    if pd.api.types.is_float_dtype(dtype):
        f = series.to_numpy(dtype=np.float64, na_value=np.nan)
        null = np.isnan(f)
        finite = np.isfinite(f)
        bad = ~null & ~finite
        out_of_range = np.zeros(n, dtype=bool)
        if want_int:
            integral = finite & (np.floor(f) == f)
            # 2**63 itself is a float that no int64 holds: the range is [-2**63, 2**63)
            out_of_range = integral & ((f < float(INT64_MIN)) | (f >= -float(INT64_MIN)))
            integral &= ~out_of_range
            bad |= finite & ~integral
            with np.errstate(invalid="ignore"):
                ints = np.where(integral, f, 0).astype(np.int64)
            values = obj_array(ints.tolist())
            values[~integral] = None
        else:
            values = obj_array(f.tolist())
            values[~finite] = None
        for pos in np.flatnonzero(bad):
            reasons[int(pos)] = _range_reason(spec) if out_of_range[pos] else _number_reason(spec, f[pos])
        return values, null, bad, reasons
    # object / string / categorical / other: one pass in Python over the non-missing values
    arr = _object_array(series)
    null = np.equal(arr, None)
    values = np.full(n, None, dtype=object)
    bad = np.zeros(n, dtype=bool)
    for pos in np.flatnonzero(~null):
        v = arr[pos]
        if isinstance(v, str) and v.strip().casefold() in NULL_LIKE_STRINGS:
            null[pos] = True
            continue
        num = _to_number(v)
        if num is None or (isinstance(num, float) and not math.isfinite(num)):
            bad[pos] = True
            what = "text" if isinstance(v, str) else ("a non-finite value" if num is not None
                                                      else type(v).__name__)
            reasons[int(pos)] = f"{spec.path}: {what} is not {_a(spec.type)}"
            continue
        if want_int and isinstance(num, float):
            if num != math.floor(num):
                bad[pos] = True
                reasons[int(pos)] = _number_reason(spec, num)
                continue
            num = int(num)
        elif not want_int and isinstance(v, Decimal):
            num = float(v)
        if isinstance(num, int) and not INT64_MIN <= num <= INT64_MAX:
            bad[pos] = True
            reasons[int(pos)] = _range_reason(spec)
            continue
        values[pos] = num
    return values, null, bad, reasons


def _a(word: str | None) -> str:
    return f"an {word}" if word and word[0] in "aeiou" else f"a {word}"


def _range_reason(spec: FieldSpec) -> str:
    return f"{spec.path}: beyond the 64-bit integer range"


def _number_reason(spec: FieldSpec, value: float) -> str:
    if not math.isfinite(value):
        return f"{spec.path}: {value} is not a finite {spec.type}"  # inf / -inf
    return f"{spec.path}: must be an integer, got a fraction"


def _booleans(series: pd.Series, spec: FieldSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
    arr = _object_array(series)
    n = len(arr)
    null = np.equal(arr, None)
    values = np.full(n, None, dtype=object)
    bad = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}
    for pos in np.flatnonzero(~null):
        v = arr[pos]
        if isinstance(v, bool | np.bool_):
            values[pos] = bool(v)
        elif isinstance(v, str):
            s = v.strip().casefold()
            if s in NULL_LIKE_STRINGS:
                null[pos] = True
            elif s in _TRUE:
                values[pos] = True
            elif s in _FALSE:
                values[pos] = False
            else:
                bad[pos] = True
                reasons[int(pos)] = f"{spec.path}: text is not a boolean"
        elif isinstance(v, int | np.integer | float | np.floating) and not isinstance(v, np.timedelta64) \
                and v in (0, 1):
            values[pos] = bool(v)
        elif isinstance(v, float | np.floating) and math.isnan(v):
            null[pos] = True
        else:
            bad[pos] = True
            reasons[int(pos)] = f"{spec.path}: {type(v).__name__} is not a boolean"
    return values, null, bad, reasons


def _generic(v: Any) -> Any:
    """One value of an untyped or object field, as JSON: numpy -> Python, Decimal -> number, dates -> ISO."""
    if isinstance(v, str):
        return _clean_any(v)
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, np.timedelta64):  # numpy counts it as an integer: left as it is, for ``unwritable``
        return v
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, Decimal):
        return (int(v) if v == v.to_integral_value() else float(v)) if v.is_finite() else None
    if isinstance(v, np.datetime64):
        ts = _timestamp(v)
        return v if ts is None else _generic(ts)  # out of range: left as it is, for ``unwritable`` to refuse
    if isinstance(v, pd.Timestamp | dt.datetime):
        ts = pd.Timestamp(v)
        if ts is pd.NaT:
            return None
        ts = ts.tz_convert("UTC") if ts.tzinfo else ts
        return ts.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ts.microsecond:06d}" if ts.microsecond else "") + "Z"
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dict):
        return drop_empty({str(k): _generic(x) for k, x in v.items()})
    if isinstance(v, list | tuple | np.ndarray):
        return drop_empty([_generic(x) for x in v])
    return None if is_null_like(v) else v


def coerce_column(series: pd.Series, spec: FieldSpec) -> Coerced:
    """Coerce one source column to the JSON values of the field ``spec`` describes (see the module docstring).

    Text, object, categorical and timestamp columns are factorised first and only their distinct values are
    coerced (a header column repeats one value per line item; a SKU column has few distinct values).
    """
    dtype = series.dtype
    if len(series) > 64 and (pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)
                             or isinstance(dtype, pd.CategoricalDtype)
                             or pd.api.types.is_datetime64_any_dtype(dtype)):
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
        out[np.equal(values, None)] = -1
        return out
    try:
        codes, _ = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
        return codes
    except TypeError:
        out = np.arange(len(values), dtype=np.intp)
        out[np.equal(values, None)] = -1
        return out


def _expand(u: Coerced, codes: np.ndarray) -> Coerced:
    """Per-row results from the results of the distinct values (``codes`` -1 = missing)."""
    missing = codes < 0
    safe = np.where(missing, 0, codes) if missing.any() else codes
    if not len(u.values):
        n = len(codes)
        return Coerced(np.full(n, None, dtype=object), np.ones(n, dtype=bool), np.zeros(n, dtype=bool), {},
                       u.kind)
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
        series = pd.Series(np.asarray(cats, dtype=object)[series.cat.codes.to_numpy()], index=series.index,
                           dtype=object).where(series.cat.codes.to_numpy() >= 0, None)
        dtype = series.dtype
    kind = spec.type if spec.type in ("string", "integer", "number", "boolean") else "object"
    is_dt = pd.api.types.is_datetime64_any_dtype(dtype)
    reasons: dict[int, str] = {}
    bad = np.zeros(n, dtype=bool)

    if spec.type in ("integer", "number"):
        values, null, bad, reasons = _numbers(series, spec)
        if spec.type == "number":
            kind = "number"
        return Coerced(values, null, bad, reasons, kind)
    if spec.type == "boolean":
        values, null, bad, reasons = _booleans(series, spec)
        return Coerced(values, null, bad, reasons, "boolean")

    if is_dt:
        values = _iso_date(series) if spec.format == "date" else _iso_utc(series)
        null = np.equal(values, None)
        if spec.type not in (None, "string"):
            bad = ~null
            reasons = {int(p): f"{spec.path}: a timestamp is not {_a(spec.type)}" for p in np.flatnonzero(bad)}
            values = np.full(n, None, dtype=object)
        return Coerced(values, null, bad, reasons, "string" if spec.type in (None, "string") else kind)

    if spec.type == "string":
        if spec.format in ("date", "date-time"):
            arr = _object_array(series)
            cleaned = obj_array([_clean_any(v) if isinstance(v, str) else v for v in arr])
            null = np.equal(cleaned, None)
            values = _format_datetime_objects(cleaned, spec.format, spec, reasons, bad)
            return Coerced(values, null, bad, reasons, "string")
        if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            values = _strings_of(series)
            # non-string objects (numbers, Decimals, dates) into a string field: their JSON text form
            if pd.api.types.is_object_dtype(dtype) and not all(type(x) is str or x is None for x in values):
                for pos in np.flatnonzero(~np.equal(values, None)):
                    v = values[pos]
                    if not isinstance(v, str):
                        s = _as_text(v, spec)
                        if s is None:
                            bad[pos] = True
                            reasons[int(pos)] = f"{spec.path}: {type(v).__name__} is not a string"
                        values[pos] = s
            null = np.equal(values, None) & ~bad
            return Coerced(values, null, bad, reasons, "string")
        # numbers / bools into a string field: their text (integral floats without ".0", e.g. postal codes)
        arr = _object_array(series)
        null = np.equal(arr, None)
        if pd.api.types.is_float_dtype(dtype):
            f = series.to_numpy(dtype=np.float64, na_value=np.nan)
            null = ~np.isfinite(f)
        values = np.full(n, None, dtype=object)
        idx = np.flatnonzero(~null)
        values[idx] = obj_array([_as_text(v, spec) for v in arr[idx]])
        return Coerced(values, null, bad, reasons, "string")

    # untyped, object or array fields: generic JSON conversion, value by value
    arr = _object_array(series)
    values = obj_array([None if v is None else _generic(v) for v in arr])
    null = np.equal(values, None)
    if spec.type in ("object", "array"):
        want = dict if spec.type == "object" else list
        for pos in np.flatnonzero(~null):
            if not isinstance(values[pos], want):
                bad[pos] = True
                reasons[int(pos)] = f"{spec.path}: {type(values[pos]).__name__} is not {_a(spec.type)}"
                values[pos] = None
    return Coerced(values, null, bad, reasons, "object")


def _as_text(v: Any, spec: FieldSpec) -> str | None:
    """A non-string scalar as the text a string field gets (``2134.0`` -> ``"2134"``)."""
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, np.timedelta64):  # numpy counts it as an integer
        return None
    if isinstance(v, int | np.integer):
        try:
            return str(int(v))
        except ValueError:  # more digits than Python writes as text (sys.get_int_max_str_digits)
            return None
    if isinstance(v, float | np.floating):
        f = float(v)
        if not math.isfinite(f):
            return None
        return str(int(f)) if f.is_integer() and abs(f) < 1e16 else repr(f)
    if isinstance(v, Decimal):
        return format(v, "f") if v.is_finite() else None
    if isinstance(v, pd.Timestamp | dt.datetime | dt.date | np.datetime64):
        g = _generic(v)
        if not isinstance(g, str):
            return None
        if spec.format == "date":
            return g[:10]
        return g
    if isinstance(v, str):
        return v
    return None


_WRITABLE_SCALARS = (type(None), bool, int, float)


def unwritable(values: np.ndarray, kind: str) -> dict[int, str]:
    """Positions of coerced values that cannot be written as JSON text, with why (e.g. a lone surrogate).

    Coercion guarantees numbers, booleans and strings of the right type; what can still be in a value is text
    that is not valid Unicode (``"\\ud800"`` from a broken export), or in an object/array/untyped field a
    type JSON has no form for (bytes, a set) or an integer beyond 64 bits. Numeric and boolean kinds are
    range-checked by coercion and skipped here; all-valid text is screened in one pass.
    """
    if kind in ("integer", "number", "boolean") or not len(values):
        return {}
    if kind == "string":  # str or None only: ASCII (the usual case) is known per string, else one encode
        try:
            texts = list(filter(None, values.tolist()))
            if all(map(str.isascii, texts)):
                return {}
            "".join(texts).encode("utf-8")
            return {}
        except (TypeError, UnicodeEncodeError):  # a lone surrogate somewhere (or, defensively, a non-string)
            pass
    out: dict[int, str] = {}
    for pos, v in enumerate(values.tolist()):
        t = type(v)
        if t is str:
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    out[pos] = "text with a lone surrogate (not valid Unicode)"
        elif t in _WRITABLE_SCALARS:
            if t is int and not INT64_MIN <= v <= 2**64 - 1:
                out[pos] = "an integer beyond the 64-bit range"
        else:
            try:
                orjson.dumps(v, option=orjson.OPT_SORT_KEYS)
            except TypeError as exc:  # orjson.JSONEncodeError is one
                msg = str(exc)
                out[pos] = ("holds text with a lone surrogate (not valid Unicode)" if "surrogate" in msg
                            else "holds an integer beyond the 64-bit range" if "64-bit" in msg
                            else f"{t.__name__} is not a JSON value ({msg})")
    return out
