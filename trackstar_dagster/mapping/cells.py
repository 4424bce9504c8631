"""Cell-level primitives every stage shares: object arrays, missing-value masks, string cleaning.

Why a module of its own: coercion, the column stages, templates and rejects all need the same few array
idioms (an object array that keeps lists whole, "which cells are None", "which cells are missing"), and
they must agree on them exactly; numpy's typing of ``np.equal(arr, None)`` also needs saying once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from trackstar_dagster.base.nulls import NULL_LIKE_STRINGS, drop_empty, is_null_like

_MAX_NULL_LEN = max(len(s) for s in NULL_LIKE_STRINGS)
_NONE: Any = None  # numpy's stubs have no overload for comparing with None; the ufunc handles it


def none_mask(values: np.ndarray) -> np.ndarray:
    """Bool mask of the cells of an object array that are ``None`` (elementwise, vectorised)."""
    out: np.ndarray = np.equal(values, _NONE)
    return out


def with_none(values: np.ndarray) -> np.ndarray:
    """``values`` with one trailing ``None``: code -1 then indexes "no value"."""
    return np.append(values, _NONE)


def obj_array(items: list[Any]) -> np.ndarray:
    """A 1-d object array holding ``items`` as they are (lists and dicts stay single elements)."""
    return np.fromiter(items, dtype=object, count=len(items))


def is_na(v: Any) -> bool:
    """One value that pandas counts as missing (also a signaling NaN ``Decimal``, which pandas trips on)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float | np.floating):
        return bool(v != v)
    if isinstance(v, Decimal):
        return v.is_nan()  # quiet and signaling NaN alike
    return isinstance(v, np.datetime64 | np.timedelta64) and bool(np.isnat(v))


def is_missing(cell: Any) -> bool:
    """A source cell with nothing in it (None, NaN, NA, NaT); text, even null-like text, is something."""
    if cell is None or cell is pd.NA or cell is pd.NaT:
        return True
    if isinstance(cell, float | np.floating):
        return bool(cell != cell)
    return isinstance(cell, np.datetime64) and bool(np.isnat(cell))


def na_mask(series: pd.Series) -> np.ndarray:
    """``series.isna()`` as a bool array, also where a cell is a signaling NaN ``Decimal`` (pandas raises)."""
    try:
        return series.isna().to_numpy(dtype=bool)
    except ArithmeticError:
        return np.fromiter((is_na(v) for v in series.to_numpy(dtype=object)), dtype=bool, count=len(series))


def object_array(series: pd.Series) -> np.ndarray:
    """The column as an object array with None for every missing value (NaN, NA, NaT)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(
            series.cat.categories.dtype if series.cat.categories.dtype != object else object
        )
    try:
        arr = series.to_numpy(dtype=object, na_value=None)
    except ArithmeticError:  # decimal.InvalidOperation: pandas' NA test trips on a signaling NaN Decimal
        arr = series.to_numpy(dtype=object).copy()
        arr[na_mask(series)] = None
    try:
        none_mask(arr)  # every caller asks this; a cell holding an array has no single answer
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


def clean_strings(arr: np.ndarray) -> np.ndarray:
    """Strip every string and turn the null-like ones (and other missing values) into None; in one pass."""
    nl = NULL_LIKE_STRINGS
    m = _MAX_NULL_LEN
    if all(type(v) is str for v in arr):
        stripped = [v.strip() for v in arr]
        return obj_array([None if len(w) <= m and w.casefold() in nl else w for w in stripped])
    return obj_array([clean_any(v) for v in arr])


def clean_any(v: Any) -> Any:
    """One value cleaned: strings stripped, null-like values (and containers left empty) as None."""
    if v is None:
        return None
    if isinstance(v, str):
        w = v.strip()
        return None if len(w) <= _MAX_NULL_LEN and w.casefold() in NULL_LIKE_STRINGS else w
    if isinstance(v, dict | list | tuple):
        return drop_empty(v)
    return None if is_null_like(v) else v
