"""The one definition of "null-like" that Trackstar rejects, shared by the sandbox, validators and row cleaner.

Trackstar answers 422 to any write-body field that is null, empty, or a null-like string such as
``"null"`` or ``"none"``; such a field must be left out. ``"NA"`` (Namibia), ``0`` and ``False`` are values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

#: Strings that, after ``strip().casefold()``, mean "no value".
NULL_LIKE_STRINGS: frozenset[str] = frozenset({"", "null", "none", "nil", "nan", "n/a", "undefined"})


def is_null_like(value: Any) -> bool:
    """True for None, NaN, NaT, pandas NA and null-like strings; False for every real value."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):
        return value.strip().casefold() in NULL_LIKE_STRINGS
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return False


def drop_empty(value: Any) -> Any:
    """Remove null-like values at any depth, and the lists and objects that are left empty.

    Returns the cleaned value; a value that is itself null-like (or empties out entirely) becomes ``None``,
    which callers treat as "leave this field out".
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            cleaned = drop_empty(v)
            if cleaned is not None:
                out[k] = cleaned
        return out or None
    if isinstance(value, list | tuple):
        items = [c for c in (drop_empty(v) for v in value) if c is not None]
        return items or None
    return None if is_null_like(value) else value


def drop_empty_body(body: dict[str, Any]) -> dict[str, Any]:
    """``drop_empty`` for a write body: always returns a dict (``{}`` when nothing is left)."""
    return drop_empty(body) or {}


def find_null_like(value: Any, path: str = "") -> list[str]:
    """Dotted paths (``line_items[0].sku``) of every null-like value inside a body, for error messages."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += find_null_like(v, f"{path}.{k}" if path else str(k))
        if not value and path:
            found.append(path)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += find_null_like(v, f"{path}[{i}]")
        if not value and path:
            found.append(path)
    elif is_null_like(value):
        found.append(path)
    return found
