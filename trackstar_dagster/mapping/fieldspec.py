"""What coercion knows about a target field (``FieldSpec``) and what it gives back (``Coerced``).

Why a module of its own: the per-type coercers, the dispatch in ``coercion``, the write-info readers in
``validation`` and the column stages all speak these two small types; they sit below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trackstar_dagster.mapping.cells import none_mask


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
        reasons = {
            k: (path + r[len(old) :] if old and r.startswith(old) else r) for k, r in self.reasons.items()
        }
        return Coerced(self.values, self.null, self.bad, reasons, self.kind, self.distinct, path)

    def typed(self) -> pd.Series:
        """The values as a typed pandas Series for pandera (string columns are real ``str`` columns)."""
        return typed_series(self.values, self.kind)


def typed_series(values: np.ndarray, kind: str) -> pd.Series:
    """An explicitly typed Series: pandas 3 + pandera want ``str``, ``Int64``, ``Float64``, ``boolean``."""
    if kind == "string":
        return pd.Series(values, dtype="str")
    if kind == "integer":
        mask = none_mask(values)
        ints = np.zeros(len(values), dtype=np.int64)
        ok = ~mask
        if ok.any():
            try:
                ints[ok] = values[ok].astype(np.int64)
            except OverflowError:
                return pd.Series(values, dtype=object)
        return pd.Series(pd.arrays.IntegerArray(ints, mask))
    if kind == "number":
        mask = none_mask(values)
        floats = np.zeros(len(values), dtype=np.float64)
        ok = ~mask
        if ok.any():
            floats[ok] = values[ok].astype(np.float64)
        return pd.Series(pd.arrays.FloatingArray(floats, mask))
    if kind == "boolean":
        mask = none_mask(values)
        bools = np.zeros(len(values), dtype=bool)
        ok = ~mask
        if ok.any():
            bools[ok] = values[ok].astype(bool)
        return pd.Series(pd.arrays.BooleanArray(bools, mask))
    return pd.Series(values, dtype=object)
