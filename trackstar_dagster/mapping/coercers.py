"""Per-type coercers: one column (or its distinct values) into one JSON type, with a reason per bad value.

Why a module of its own: each function here knows one target type (numbers, booleans, timestamps, text,
untyped JSON) and nothing of records or schemas; ``coercion`` picks one per field spec. The rules they
implement are listed in ``coercion``'s docstring.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from trackstar_dagster.base.nulls import NULL_LIKE_STRINGS, drop_empty, is_null_like
from trackstar_dagster.mapping.cells import clean_any, clean_strings, none_mask, obj_array, object_array
from trackstar_dagster.mapping.fieldspec import FieldSpec

_TRUE = frozenset({"true", "yes", "y", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "f"})
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: what coercion returns for one column: (values, null mask, bad mask, reason per bad position)
Parts = tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]


def strings_of(series: pd.Series) -> np.ndarray:
    """Stripped strings with None for null-like, for a str/object column."""
    arr = object_array(series)
    present = ~none_mask(arr)
    out = np.full(len(arr), None, dtype=object)
    if present.any():
        out[present] = clean_strings(arr[present])
    return out


def iso_utc(values: pd.Series) -> np.ndarray:
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


def iso_date(values: pd.Series) -> np.ndarray:
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


def datetimes_from_objects(
    arr: np.ndarray, fmt: str | None, spec: FieldSpec, reasons: dict[int, str], bad: np.ndarray
) -> np.ndarray:
    """Strings/datetimes of an object column into a date or date-time field: parsed and rewritten in ISO form."""
    out = np.full(len(arr), None, dtype=object)
    idx = np.flatnonzero(~none_mask(arr))
    if not len(idx):
        return out
    sub = arr[idx]
    if fmt == "date":
        parsed = pd.to_datetime(
            pd.Series(sub, dtype=object).map(_date_part), errors="coerce", format="%Y-%m-%d"
        )
        txt = iso_date(parsed)
    else:
        parsed = pd.to_datetime(
            pd.Series(sub, dtype=object).map(_dt_text), errors="coerce", utc=True, format="ISO8601"
        )
        txt = iso_utc(parsed)
    failed = none_mask(txt)
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
            return (
                float(v.strip().replace(",", "")) if not v.strip().lstrip("+-").isdigit() else int(v.strip())
            )
        except ValueError:
            return None
    return None


def numbers(series: pd.Series, spec: FieldSpec) -> Parts:
    """A column into an integer or number field: (values, null, bad, reasons)."""
    n = len(series)
    reasons: dict[int, str] = {}
    dtype = series.dtype
    want_int = spec.type == "integer"
    if pd.api.types.is_bool_dtype(dtype):
        arr = object_array(series)
        null = none_mask(arr)
        bad = ~null
        for pos in np.flatnonzero(bad):
            reasons[int(pos)] = f"{spec.path}: a boolean is not {a_type(spec.type)}"
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
    arr = object_array(series)
    null = none_mask(arr)
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
            what = (
                "text"
                if isinstance(v, str)
                else ("a non-finite value" if num is not None else type(v).__name__)
            )
            reasons[int(pos)] = f"{spec.path}: {what} is not {a_type(spec.type)}"
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


def a_type(word: str | None) -> str:
    return f"an {word}" if word and word[0] in "aeiou" else f"a {word}"


def _range_reason(spec: FieldSpec) -> str:
    return f"{spec.path}: beyond the 64-bit integer range"


def _number_reason(spec: FieldSpec, value: float) -> str:
    if not math.isfinite(value):
        return f"{spec.path}: {value} is not a finite {spec.type}"  # inf / -inf
    return f"{spec.path}: must be an integer, got a fraction"


def booleans(series: pd.Series, spec: FieldSpec) -> Parts:
    arr = object_array(series)
    n = len(arr)
    null = none_mask(arr)
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
        elif (
            isinstance(v, int | np.integer | float | np.floating)
            and not isinstance(v, np.timedelta64)
            and v in (0, 1)
        ):
            values[pos] = bool(v)
        elif isinstance(v, float | np.floating) and math.isnan(v):
            null[pos] = True
        else:
            bad[pos] = True
            reasons[int(pos)] = f"{spec.path}: {type(v).__name__} is not a boolean"
    return values, null, bad, reasons


def generic(v: Any) -> Any:
    """One value of an untyped or object field, as JSON: numpy -> Python, Decimal -> number, dates -> ISO."""
    if isinstance(v, str):
        return clean_any(v)
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
        return v if ts is None else generic(ts)  # out of range: left as it is, for ``unwritable`` to refuse
    if isinstance(v, pd.Timestamp | dt.datetime):
        ts = pd.Timestamp(v)
        if ts is pd.NaT:
            return None
        ts = ts.tz_convert("UTC") if ts.tzinfo else ts
        return ts.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ts.microsecond:06d}" if ts.microsecond else "") + "Z"
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dict):
        return drop_empty({str(k): generic(x) for k, x in v.items()})
    if isinstance(v, list | tuple | np.ndarray):
        return drop_empty([generic(x) for x in v])
    return None if is_null_like(v) else v


def as_text(v: Any, spec: FieldSpec) -> str | None:
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
        g = generic(v)
        if not isinstance(g, str):
            return None
        if spec.format == "date":
            return g[:10]
        return g
    if isinstance(v, str):
        return v
    return None
