"""What each JSON Schema keyword means for a write body, as plain predicates both validator paths share.

The generated fast code (``codegen.py``) calls these for the rarer keywords and the detailed path
(``explain.py``) for all of them, so a keyword's meaning is written once: the ``format`` checks, JSON
equality for ``enum``/``const``/``uniqueItems`` (``1 == 1.0``, ``True != 1``), ``multipleOf`` as jsonschema
computes it, the type names, and Trackstar's null-like rule (mirroring ``base.nulls`` exactly, but fast on
the plain ``str``/``int``/``dict``/``list`` values bodies are made of). Also the ``Problem`` a refusal is
reported as and the path/value formatting of its message.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

from trackstar_dagster.base.nulls import NULL_LIKE_STRINGS, is_null_like


class Problem(NamedTuple):
    """One reason a body is refused: dotted field path (``line_items.0.sku``; ``""`` = the body) + message."""

    field: str
    message: str


def is_iso_datetime(value: str) -> bool:
    """ISO 8601 date-time as Python reads it (a trailing ``Z`` means UTC)."""
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_iso_date(value: str) -> bool:
    """ISO 8601 calendar date as Python reads it."""
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


#: The ``format`` values that are enforced, and how (also used to configure the jsonschema reference).
FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {"date-time": is_iso_datetime, "date": is_iso_date}

MAX_NULL_LEN = max(len(s) for s in NULL_LIKE_STRINGS) + 1
TYPE_NAMES = ("object", "array", "string", "integer", "number", "boolean")


# -- null-like helpers (mirror nulls.is_null_like / nulls.find_null_like exactly) ------------------------


def nl_self(v: Any) -> bool:
    """Is this value itself null-like, counting empty objects and lists (not at the body root)."""
    c = v.__class__
    if c is str:
        t = v.strip()
        return len(t) < MAX_NULL_LEN and t.casefold() in NULL_LIKE_STRINGS
    if c is int or c is bool:
        return False
    if c is dict or c is list:
        return not v
    if isinstance(v, dict | list):
        return not v
    return is_null_like(v)


def nl_kids(v: Any) -> bool:
    """Is anything inside this value null-like (at any depth)."""
    if isinstance(v, dict):
        return any(nl_self(x) or nl_kids(x) for x in v.values())
    if isinstance(v, list):
        return any(nl_self(x) or nl_kids(x) for x in v)
    return False


def nl_any(v: Any) -> bool:
    """The value or anything inside it is null-like."""
    return nl_self(v) or nl_kids(v)


def null_paths(v: Any, path: str) -> list[str]:
    """Dotted paths of null-like values strictly inside ``v``."""
    found: list[str] = []
    if isinstance(v, dict):
        items: Any = v.items()
    elif isinstance(v, list):
        items = enumerate(v)
    else:
        return found
    for k, x in items:
        sub = join_path(path, k)
        if nl_self(x):
            found.append(sub)
        else:
            found += null_paths(x, sub)
    return found


# -- JSON equality as jsonschema sees it (1 == 1.0, True != 1) ------------------------------------------


def json_equal(one: Any, two: Any) -> bool:
    """Equality as JSON Schema means it: ``1 == 1.0`` but ``True != 1``, containers compared deeply."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return one == two
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(json_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return one.keys() == two.keys() and all(json_equal(one[k], two[k]) for k in one)
    if isinstance(one, bool) or isinstance(two, bool):
        return isinstance(one, bool) and isinstance(two, bool) and one == two
    return one == two


def in_enum(v: Any, values: list[Any]) -> bool:
    """``enum``: one of the values, compared as JSON."""
    return any(json_equal(v, e) for e in values)


def is_unique(v: list[Any]) -> bool:
    """``uniqueItems``: no two items equal as JSON (quadratic, but arrays in bodies are short)."""
    return all(not json_equal(v[i], v[j]) for i in range(len(v)) for j in range(i + 1, len(v)))


def multiple_ok(v: Any, m: Any) -> bool:
    """``multipleOf`` exactly as jsonschema computes it."""
    if isinstance(m, float):
        quotient = v / m
        try:
            return int(quotient) == quotient
        except OverflowError:
            return False
    return not (v % m)


def is_type(v: Any, t: str) -> bool:
    """``type``: as JSON Schema, except a float is never an ``integer`` and a bool never a number."""
    if t == "string":
        return isinstance(v, str)
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "boolean":
        return v.__class__ is bool
    if t == "integer":
        return isinstance(v, int) and v.__class__ is not bool
    if t == "number":
        return isinstance(v, numbers.Number) and v.__class__ is not bool
    return False


def type_name(v: Any) -> str:
    """The JSON type name of a value, for "expected X, got Y" messages."""
    if v.__class__ is bool:
        return "boolean"
    for t in ("string", "object", "array", "integer", "number"):
        if is_type(v, t):
            return t
    return type(v).__name__


def join_path(path: str, key: Any) -> str:
    """The dotted field path of a ``Problem`` (``line_items.0.sku``)."""
    return f"{path}.{key}" if path else str(key)


def short(v: Any, limit: int = 60) -> str:
    """A value as shown in a message: its repr, cut so a huge value does not swamp the report."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."
