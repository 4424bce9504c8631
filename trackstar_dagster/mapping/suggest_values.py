"""What a column's values say it can feed: types, formats (emails, dates, phones, zip codes) and enums.

Why a module of its own: the second evidence a suggested mapping weighs, read from a sample of rows, and
the only one that can tell apart two columns whose names fit a field equally (``qty`` of counts from
``quantity`` of units, a ``deliver_by`` of dates from a ``delivery_date`` of notes). A profile is made once
per column; ``value_score`` then judges it against one field's schema row (type, format, enum).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trackstar_dagster.base.nulls import is_null_like

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,20}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_POSTAL = re.compile(r"^(?=.*\d)[A-Za-z0-9][A-Za-z0-9 -]{1,8}[A-Za-z0-9]$")
_COUNTRY = re.compile(r"^[A-Z]{2,3}$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")

#: a field's leaf (canonical, see ``suggest_names``) -> the kind of text it holds
EXPECTED_KIND = {"email": "email", "phone": "phone", "postal_code": "postal", "country": "country"}
_KIND_NAMES = {
    "email": "emails",
    "phone": "phone numbers",
    "postal": "postal codes",
    "country": "country codes",
}
#: kinds that are unmistakable: a column of them feeds no field expecting something else
STRONG_KINDS = ("email", "date", "phone")


@dataclass
class Profile:
    """A column's sample, described: what its values look like (shares of the non-null values)."""

    column: str
    present: int  # non-null-like values in the sample
    kind: str  # integer | number | boolean | datetime | text
    shares: dict[str, float] = field(
        default_factory=dict
    )  # email, phone, date, postal, country, integer, number
    distinct: list[str] = field(default_factory=list)  # up to 50 distinct values, as text
    n_distinct: int = 0
    #: share of multi-row keys over which the column holds more than one value (None before the key is known)
    varies_within_key: float | None = None


def profile(series: pd.Series, sample: int = 2000) -> Profile:
    """Describe one column from up to ``sample`` of its values."""
    head = series.iloc[:sample]
    values = [v for v in head.tolist() if not is_null_like(v)]
    kind = _kind(head)
    texts = [v.isoformat() if hasattr(v, "isoformat") else str(v).strip() for v in values]
    n = len(texts) or 1
    shares: dict[str, float] = {}
    for name, pattern in (
        ("email", _EMAIL),
        ("phone", _PHONE),
        ("date", _DATE),
        ("postal", _POSTAL),
        ("country", _COUNTRY),
        ("number", _NUMBER),
        ("integer", _INTEGER),
    ):
        shares[name] = sum(1 for t in texts if pattern.match(t)) / n
    if kind == "datetime":
        shares["date"] = 1.0
    shares["phone"] = sum(1 for t in texts if _is_phone(t)) / n
    if kind in ("integer", "number"):
        shares["phone"] = shares["postal"] = 0.0
    distinct = list(dict.fromkeys(texts))
    return Profile(series.name if isinstance(series.name, str) else str(series.name), len(values), kind,
                   shares, distinct[:50], len(distinct))  # fmt: skip


def _is_phone(text: str) -> bool:
    """7 to 15 digits (E.164) written as a phone number: a leading + or separators; bare digits are ids."""
    digits = sum(c.isdigit() for c in text)
    return bool(_PHONE.match(text)) and 7 <= digits <= 15 and (text.startswith("+") or digits < len(text))


def _kind(series: pd.Series) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        values = series.dropna().to_numpy(dtype=float)
        return "integer" if len(values) and bool(np.all(values == np.round(values))) else "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    sample = [v for v in series.tolist() if not is_null_like(v)][:200]
    if sample and all(isinstance(v, bool) for v in sample):
        return "boolean"
    if sample and all(isinstance(v, int | float) and not isinstance(v, bool) for v in sample):
        return "number"
    if sample and all(hasattr(v, "as_tuple") for v in sample):  # Decimal
        return "number"
    return "text"


def strong_kind(p: Profile) -> str | None:
    """The unmistakable kind of most of the column's values (emails, dates, phones), if any."""
    for kind in STRONG_KINDS:
        if p.shares.get(kind, 0.0) >= 0.8:
            return kind
    return None


def value_score(p: Profile, spec: dict[str, Any], leaf: str) -> tuple[float, str]:
    """(0..1, why): how well the sample fits the field's type, format and enum; 0 when it cannot."""
    if p.present == 0:
        return 0.3, "values: none in the sample"
    types = set(str(spec.get("type") or "string").split("|"))
    score, why = _type_fit(p, types, spec.get("format"))
    enum = [str(v) for v in (spec.get("enum") or [])]
    if enum and score > 0:
        folded = {e.casefold() for e in enum}
        share = sum(1 for v in p.distinct if v.casefold() in folded) / max(1, len(p.distinct))
        score, why = score * (0.1 + 0.9 * share**2), f"values: {share:.0%} of them in the schema's enum"
    expected = EXPECTED_KIND.get(leaf)
    strong = strong_kind(p)
    if expected is not None and score > 0:
        share = p.shares.get(expected, 0.0)
        score, why = score * (0.3 + 0.7 * share), f"values: {share:.0%} look like {_KIND_NAMES[expected]}"
    elif strong is not None and strong != "date" and expected != strong:
        score, why = score * 0.2, f"values: {_KIND_NAMES.get(strong, strong + 's')}"
    return round(score, 3), why


def _type_fit(p: Profile, types: set[str], fmt: Any) -> tuple[float, str]:
    """How well the values fit the JSON type (and date format) the field takes."""
    if "integer" in types:
        if p.kind == "integer" or p.shares.get("integer", 0) >= 0.95:
            return 1.0, "values: whole numbers"
        if p.kind == "number" or p.shares.get("number", 0) >= 0.95:
            return 0.3, "values: numbers, not all whole"
        return 0.0, "values: not numbers"
    if "number" in types:
        if p.kind in ("integer", "number") or p.shares.get("number", 0) >= 0.95:
            return 1.0, "values: numbers"
        return 0.0, "values: not numbers"
    if "boolean" in types:
        if p.kind == "boolean" or {v.casefold() for v in p.distinct} <= {
            "true",
            "false",
            "yes",
            "no",
            "0",
            "1",
        }:
            return 1.0, "values: booleans"
        return 0.0, "values: not booleans"
    if "string" in types:
        if fmt in ("date-time", "date"):
            share = p.shares.get("date", 0.0)
            return (1.0, "values: dates") if share >= 0.8 else (0.1 * share, "values: not dates")
        if p.kind == "datetime":
            return 0.3, "values: timestamps"
        if p.kind == "boolean":
            return 0.2, "values: booleans"
        return (1.0, "values: text") if p.kind == "text" else (0.8, "values: numbers, written as text")
    return 0.0, "values: the field is an object or array"
